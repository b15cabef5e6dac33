// Package deps checks what each binary links: kas and agentk are built and
// shipped separately, so neither may pull in the other's code, and neither
// may pull in the heavyweights that only tests and tools need.
package deps

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// rule forbids a binary to link a package: an import path, or a prefix of
// import paths when it ends in "/".
type rule struct {
	pkg string
	why string
}

// testOnly are modules that only tests, benchmarks and tools use (most of
// them required by test/go.mod only, see TestProductModuleLean).
var testOnly = []rule{
	{"helm.sh/helm/", "the Helm SDK is for the chart tests"},
	{"gonum.org/v1/plot/", "gonum/plot draws the benchmark plots"},
	{"github.com/rancher/remotedialer/", "remotedialer is a benchmark baseline"},
	{"go.uber.org/goleak", "goleak is for tests"},
	{"kubetunnel/internal/testutil", "test helpers"},
	{"kubetunnel/internal/testpki", "test certificates"},
	{"kubetunnel/test/", "tests"},
}

var binaries = map[string][]rule{
	"./cmd/kas": append([]rule{
		// kas never talks to a Kubernetes API itself: agentk does.
		{"k8s.io/client-go/", "kas does not talk to a Kubernetes API (agentk does)"},
		{"k8s.io/kubernetes/", "kas does not talk to a Kubernetes API"},
		{"github.com/argoproj/argo-cd/gitops-engine/", "GitOps is applied by agentk"},
		{"kubetunnel/agentk", "kas and agentk never import each other"},
		{"kubetunnel/gitops/apply", "GitOps is applied by agentk"},
	}, testOnly...),
	"./cmd/agentk": append([]rule{
		{"kubetunnel/kas", "kas and agentk never import each other"},
		{"kubetunnel/kasproxy", "the API proxy runs in kas"},
		{"github.com/redis/go-redis/", "only kas replicas use Redis"},
	}, testOnly...),
}

// matches reports whether import path p is forbidden by r.
func (r rule) matches(p string) bool {
	prefix := strings.TrimSuffix(r.pkg, "/")
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// graph returns the packages the binary at pkg links (itself included),
// each with the packages it imports.
func graph(t *testing.T, pkg string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, pkg)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	g := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		g[f[0]] = f[1:]
	}
	return g
}

func TestBinaryDependencies(t *testing.T) {
	for bin, rules := range binaries {
		t.Run(strings.TrimPrefix(bin, "./cmd/"), func(t *testing.T) {
			g := graph(t, bin)
			if len(g) < 10 {
				t.Fatalf("go list -deps %s listed only %v", bin, g)
			}
			for _, r := range rules {
				// Report where the forbidden code comes in: the
				// packages it imports from outside, not all of it.
				var linked int
				for p, imports := range g {
					if r.matches(p) {
						linked++
						continue
					}
					for _, imp := range imports {
						if r.matches(imp) {
							t.Errorf("%s links %s, imported by %s: %s", bin, imp, p, r.why)
						}
					}
				}
				if linked > 0 {
					t.Logf("%s links %d packages matching %s", bin, linked, r.pkg)
				}
			}
		})
	}
}

func TestRuleMatches(t *testing.T) {
	for _, c := range []struct {
		rule, pkg string
		want      bool
	}{
		{"kubetunnel/kas", "kubetunnel/kas", true},
		{"kubetunnel/kas", "kubetunnel/kas/replicas", true},
		{"kubetunnel/kas", "kubetunnel/kasproxy", false},
		{"k8s.io/client-go/", "k8s.io/client-go/rest", true},
		{"k8s.io/client-go/", "k8s.io/client-gox", false},
	} {
		if got := (rule{pkg: c.rule}).matches(c.pkg); got != c.want {
			t.Errorf("rule %q matches %q = %v, want %v", c.rule, c.pkg, got, c.want)
		}
	}
}

// testModules are the heavyweights that only the tests' own module
// (test/go.mod) may require: in the product module's graph they would be
// downloaded and checksummed by every build of kas and agentk, and a tidy
// go.mod would list them among its requirements.
var testModules = []string{
	"helm.sh/helm/v3",
	"gonum.org/v1/plot",
	"github.com/rancher/remotedialer",
}

// The product module (../../go.mod) does not require the test-only modules,
// not even indirectly: go list -m all is its whole module graph.
func TestProductModuleLean(t *testing.T) {
	cmd := exec.Command("go", "list", "-m", "all")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -m all: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -m all: %v", err)
	}
	mods := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		mods[strings.Fields(line)[0]] = true
	}
	if !mods["kubetunnel"] || !mods["k8s.io/client-go"] {
		t.Fatalf("go list -m all in the repository root did not list the product module's graph:\n%s", out)
	}
	for _, m := range testModules {
		if mods[m] {
			t.Errorf("the product module's graph holds %s: only test/go.mod may require it (move the code that imports it under test/)", m)
		}
	}
	t.Logf("the product module's graph has %d modules", len(mods))
}

// replaces returns the replace directives of the go.mod file at path, one
// "old => new version" string each, leaving out those of the modules in
// skip.
func replaces(t *testing.T, path string, skip ...string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inBlock := false
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "replace (":
			inBlock = true
			continue
		case inBlock && line == ")":
			inBlock = false
			continue
		case strings.HasPrefix(line, "replace "):
			line = strings.TrimPrefix(line, "replace ")
		case !inBlock:
			continue
		}
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		if f := strings.Fields(line); !slices.Contains(skip, f[0]) {
			out = append(out, strings.Join(f, " "))
		}
	}
	slices.Sort(out)
	return out
}

// The tests' module (test/go.mod) repeats the product module's replace
// block: replace directives apply only in the main module, and the two
// graphs must pick the same Kubernetes versions, or the tests (and the
// test cluster built from test/go.mod's tool lines) would run against
// other code than kas and agentk link.
func TestReplaceBlocksMatch(t *testing.T) {
	product := replaces(t, "../../go.mod")
	tests := replaces(t, "../go.mod", "kubetunnel")
	if len(product) < 10 {
		t.Fatalf("go.mod has only %d replace directives: %q", len(product), product)
	}
	if !slices.Equal(product, tests) {
		t.Errorf("test/go.mod's replace block differs from go.mod's: copy it over\ngo.mod:      %q\ntest/go.mod: %q", product, tests)
	}
}
