package chart_test

import (
	"fmt"
	"kubetunnel/internal/testutil/controlplane"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"
)

// object is one rendered Kubernetes object.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }
func (o object) name() string { return str(o, "metadata", "name") }
func (o object) namespace() string {
	return str(o, "metadata", "namespace")
}

// rendered is a chart rendered for one release.
type rendered struct {
	// YAML is every manifest in install order, as kubectl apply -f takes it.
	YAML string
	// Objects are the parsed documents, in the same order.
	Objects []object
	// Notes is the rendered NOTES.txt.
	Notes string
}

// installOrder sorts kinds the way Helm installs them (a subset).
var installOrder = []string{
	"Namespace", "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim",
	"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service",
	"Deployment", "ServiceMonitor",
}

// renderChart renders chart/<name> as `helm template` would for release
// name in namespace, with values (YAML) over the chart's defaults.
func renderChart(name, release, namespace, values string) (*rendered, error) {
	return renderChartManagedBy(name, release, namespace, values, "Helm")
}

// renderChartManagedBy is renderChart with another .Release.Service (the
// app.kubernetes.io/managed-by label) than Helm.
func renderChartManagedBy(name, release, namespace, values, managedBy string) (*rendered, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	ch, err := loader.Load(filepath.Join(root, "chart", name))
	if err != nil {
		return nil, err
	}
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		return nil, fmt.Errorf("test values: %w", err)
	}
	top, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: release, Namespace: namespace, Revision: 1, IsInstall: true,
	}, nil)
	if err != nil {
		return nil, err
	}
	top["Release"].(map[string]any)["Service"] = managedBy
	files, err := engine.Render(ch, top)
	if err != nil {
		return nil, err
	}
	out := &rendered{}
	var docs []string
	for path, text := range files {
		base := filepath.Base(path)
		if strings.HasPrefix(base, "_") {
			continue
		}
		if base == "NOTES.txt" {
			out.Notes = text
			continue
		}
		for _, doc := range strings.Split("\n"+text, "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			docs = append(docs, fmt.Sprintf("# Source: %s\n%s\n", path, strings.Trim(doc, "\n")))
		}
	}
	parsed := make(map[string]object, len(docs))
	for _, d := range docs {
		var o object
		if err := yaml.Unmarshal([]byte(d), &o); err != nil {
			return nil, fmt.Errorf("rendered YAML does not parse: %w\n%s", err, d)
		}
		if o == nil {
			return nil, fmt.Errorf("rendered document holds comments only:\n%s", d)
		}
		parsed[d] = o
	}
	rank := func(kind string) int {
		if i := slices.Index(installOrder, kind); i >= 0 {
			return i
		}
		return len(installOrder)
	}
	slices.SortStableFunc(docs, func(a, b string) int {
		oa, ob := parsed[a], parsed[b]
		if d := rank(oa.kind()) - rank(ob.kind()); d != 0 {
			return d
		}
		return strings.Compare(oa.namespace()+"/"+oa.name(), ob.namespace()+"/"+ob.name())
	})
	for i, d := range docs {
		if i > 0 {
			out.YAML += "---\n"
		}
		out.YAML += d
		out.Objects = append(out.Objects, parsed[d])
	}
	return out, nil
}

func mustRender(t *testing.T, name, release, namespace, values string) *rendered {
	t.Helper()
	r, err := renderChart(name, release, namespace, values)
	if err != nil {
		t.Fatalf("render chart/%s with\n%s\n: %v", name, values, err)
	}
	return r
}

// find returns the objects of a kind.
func (r *rendered) find(kind string) []object {
	var out []object
	for _, o := range r.Objects {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the single object of a kind, failing otherwise.
func (r *rendered) one(t *testing.T, kind string) object {
	t.Helper()
	objs := r.find(kind)
	if len(objs) != 1 {
		t.Fatalf("%d %s objects rendered, want 1:\n%s", len(objs), kind, r.YAML)
	}
	return objs[0]
}

// writeTemp writes the rendered YAML to a file for kubectl.
func (r *rendered) writeTemp(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(p, []byte(r.YAML), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// get walks maps and lists: get(o, "spec", "template", 0) …
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, ok2 := v.(object); ok2 {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

// container returns the first container of a Deployment.
func container(d object) map[string]any {
	c, _ := get(d, "spec", "template", "spec", "containers", 0).(map[string]any)
	return c
}

// args returns a container's args as strings.
func args(c map[string]any) []string {
	var out []string
	for _, a := range list(c, "args") {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

// mountsCover reports whether path lies under one of the container's
// volumeMounts (a file the container can read).
func mountsCover(c map[string]any, path string) bool {
	for _, m := range list(c, "volumeMounts") {
		mp := str(m, "mountPath")
		if path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
			return true
		}
	}
	return false
}
