package main

import (
	"os"
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
