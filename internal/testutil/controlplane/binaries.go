package controlplane

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// binaryPackages maps each binary to the package that builds it. Both are
// recorded as tool lines in test/go.mod, so they build from the module
// graph at the versions the project already pins.
var binaryPackages = []Binary{
	{"etcd", "go.etcd.io/etcd/server/v3"},
	{"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"},
}

// Binary is a program built from a package of the module graph.
type Binary struct{ Name, Package string }

// rootModule is the module at the repository root. The tests' own module
// (test/go.mod, kubetunnel/test) sits inside it, so the first go.mod above
// a test's directory is not necessarily the root's.
const rootModule = "kubetunnel"

// RepoRoot returns the directory holding the go.mod of module kubetunnel,
// walking up from the working directory (tests run in their package
// directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}
	for {
		if modulePath(filepath.Join(dir, "go.mod")) == rootModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", rootModule)
		}
		dir = parent
	}
}

// ToolsDir is the directory of the module whose go.mod holds the tool
// lines for the test binaries (etcd, kube-apiserver, the node's
// binaries): `go build` of a tool package runs there.
func ToolsDir(root string) string { return filepath.Join(root, "test") }

// modulePath is the module path declared by the go.mod file at path, or ""
// if there is none.
func modulePath(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// ensureBinaries returns the binary directory, building any missing binary
// so that tests never skip for lack of a control plane. A cold
// kube-apiserver build takes about ten minutes on two cores; later runs find
// the binaries in place.
func ensureBinaries(ctx context.Context, opts *Options) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	binDir := opts.BinDir
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
	}
	if err := EnsureBinaries(ctx, binDir, opts.logf, binaryPackages); err != nil {
		return "", err
	}
	return binDir, nil
}

// EnsureBinaries builds each binary missing from binDir, so that tests
// never skip for lack of one. Concurrent callers (go test runs packages in
// parallel) take turns: one builds while the others wait and then find
// the binary.
func EnsureBinaries(ctx context.Context, binDir string, logf func(string, ...any), bins []Binary) error {
	if allExist(binDir, bins) {
		return nil
	}
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", binDir, err)
	}
	unlock, err := lockFile(filepath.Join(binDir, ".controlplane-build.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	for _, b := range bins {
		out := filepath.Join(binDir, b.Name)
		if _, err := os.Stat(out); err == nil {
			continue
		}
		logf("building %s from %s (slow when the build cache is cold)", out, b.Package)
		start := time.Now()
		// Build under a temporary name and rename, so nobody ever runs a
		// half-written binary.
		tmp := out + ".tmp"
		cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, b.Package)
		cmd.Dir = ToolsDir(root)
		if combined, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", b.Name, err, combined)
		}
		if err := os.Rename(tmp, out); err != nil {
			return fmt.Errorf("install %s: %w", b.Name, err)
		}
		logf("built %s in %s", b.Name, time.Since(start).Round(time.Second))
	}
	return nil
}

func allExist(binDir string, bins []Binary) bool {
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(binDir, b.Name)); err != nil {
			return false
		}
	}
	return true
}
