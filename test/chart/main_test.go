package chart_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/test/build"
)

var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	code := controlplane.Main(m, &cp, controlplane.Options{})
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binary returns cmd/<name> built as its Dockerfile builds it (see
// test/build), built once per test run.
func binary(t *testing.T, name string) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "chart-test-bin-")
		if binErr != nil {
			return
		}
		root, err := controlplane.RepoRoot()
		if err != nil {
			binErr = err
			return
		}
		for _, n := range []string{"agentk", "kas"} {
			if _, err := build.Binary(context.Background(), root, binDir, n, "v0.0.0-chart-test"); err != nil {
				binErr = err
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, name)
}

// kubectl runs the real kubectl against the test control plane.
func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--kubeconfig", cp.KubeconfigPath, "--cache-dir", filepath.Join(t.TempDir(), "kube-cache")}, args...)
	cmd := exec.CommandContext(ctx, "kubectl", full...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// dryRunApply applies the rendered manifests with server-side dry-run: the
// API server validates and admits every object (strict field validation:
// an unknown field fails) without storing it.
func dryRunApply(t *testing.T, r *rendered) {
	t.Helper()
	out, err := kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", r.writeTemp(t))
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s\nmanifests:\n%s", err, out, r.YAML)
	}
	if n := strings.Count(out, "(server dry run)"); n != len(r.Objects) {
		t.Errorf("kubectl dry-run applied %d objects, want %d:\n%s", n, len(r.Objects), out)
	}
}

// namespace creates a namespace for a test.
func namespace(t *testing.T) string {
	t.Helper()
	ns, err := cp.CreateNamespace(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
