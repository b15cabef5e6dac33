package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kubetunnel/test/realnode"
)

// The demo's tests run inside a node network namespace of their own
// (realnode re-executes the test binary there), as `make demo` does.
func TestMain(m *testing.M) { os.Exit(realnode.RunInNamespace(m)) }

// make demo keeps working on a real node: the whole setup runs, the example
// workload is applied through GitOps, runs, and serves through kubectl
// port-forward via kas, and everything stops cleanly.
func TestDemoOnce(t *testing.T) {
	if err := run(t.Context(), true, true); err != nil {
		t.Fatal(err)
	}
}

// The light control plane, for machines that cannot run a node: the
// example is applied and read back through kas.
func TestDemoLightOnce(t *testing.T) {
	if err := run(t.Context(), true, false); err != nil {
		t.Fatal(err)
	}
}

// Where a piece of the real node is missing, make demo says which and
// how to install it before falling back; where all are there, it says
// nothing and runs the real node.
func TestDemoSaysWhyItFallsBack(t *testing.T) {
	if why := fallbackReason(); why != "" {
		t.Fatalf("this machine has every piece, yet: %s", why)
	}
	bin := t.TempDir()
	for _, p := range []string{"ip", "nsenter", "runc", "ctr", "containerd-shim-runc-v2", "busybox"} {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path, filepath.Join(bin, p)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	why := fallbackReason()
	for _, want := range []string{"light control plane", "containerd (package containerd)", "apt-get install -y containerd"} {
		if !strings.Contains(why, want) {
			t.Errorf("the reason does not say %q:\n%s", want, why)
		}
	}
}
