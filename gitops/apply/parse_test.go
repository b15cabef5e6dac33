package apply

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeScope knows a few built-in kinds.
func fakeScope(gvk schema.GroupVersionKind) (bool, error) {
	switch gvk.GroupKind().String() {
	case "ConfigMap", "Secret", "Deployment.apps", "Role.rbac.authorization.k8s.io":
		return true, nil
	case "Namespace", "ClusterRole.rbac.authorization.k8s.io", "CustomResourceDefinition.apiextensions.k8s.io":
		return false, nil
	}
	return false, fmt.Errorf("%w %s", ErrUnknownKind, gvk.Kind)
}

func parseWith(files []File, ns string) ([]string, error) {
	objs, srcs, err := decodeFiles(files)
	if err != nil {
		return nil, err
	}
	if err := setNamespaces(objs, srcs, ns, fakeScope); err != nil {
		return nil, err
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, objectKey(o))
	}
	return keys, nil
}

func TestParse(t *testing.T) {
	files := []File{
		{Path: "/m/multi.yaml", Data: []byte(`
# a comment-only first document
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
---
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: b
  namespace: other
data:
  n: "1"
`)},
		{Path: "/m/obj.json", Data: []byte(`{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cr", "namespace": "ignored"}}`)},
		{Path: "/m/list.yaml", Data: []byte(`
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  metadata: {name: s}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleList
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: r, namespace: x}
`)},
		{Path: "/m/empty.yaml", Data: []byte("\n---\n# nothing\n")},
		{Path: "/m/crd.yaml", Data: []byte(`
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
`)},
	}
	got, err := parseWith(files, "dflt")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/ConfigMap/dflt/a",
		"/ConfigMap/other/b",
		"rbac.authorization.k8s.io/ClusterRole//cr",
		"/Secret/dflt/s",
		"apps/Deployment/dflt/d",
		"rbac.authorization.k8s.io/Role/x/r",
		"apiextensions.k8s.io/CustomResourceDefinition//widgets.example.com",
		"example.com/Widget/dflt/w",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("objects\n got %q\nwant %q", got, want)
	}
}

func TestParseIntegersStayIntegers(t *testing.T) {
	objs, _, err := decodeFiles([]File{{Path: "d.yaml", Data: []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 3}\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if v := objs[0].Object["spec"].(map[string]any)["replicas"]; v != int64(3) {
		t.Errorf("replicas = %#v, want int64(3)", v)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []File
		want  string
	}{
		{"bad yaml", []File{{Path: "/manifests/app.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n")}},
			"/manifests/app.yaml: document 2: "},
		{"no kind", []File{{Path: "/m/a.yaml", Data: []byte("apiVersion: v1\nmetadata: {name: a}\n")}},
			"/m/a.yaml: document 1: kind: missing"},
		{"no apiVersion", []File{{Path: "/m/a.yaml", Data: []byte("---\nkind: ConfigMap\nmetadata: {name: a}\n")}},
			"/m/a.yaml: document 1: apiVersion: missing"},
		{"no name", []File{{Path: "/m/a.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {a: b}}\n")}},
			"/m/a.yaml: document 1: ConfigMap: metadata.name: missing"},
		{"scalar", []File{{Path: "/m/a.yaml", Data: []byte("just a string\n")}},
			"/m/a.yaml: document 1: not a Kubernetes object"},
		{"bad list item", []File{{Path: "/m/l.yaml", Data: []byte("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  metadata: {name: b}\n")}},
			"/m/l.yaml: document 1: List items[1]: kind: missing"},
		{"bad json", []File{{Path: "/m/a.json", Data: []byte(`{"apiVersion": "v1", "kind": `)}},
			"/m/a.json: document 1: "},
		{"unknown kind", []File{{Path: "/m/a.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n")}},
			"/m/a.yaml: document 2: unknown kind Gadget"},
		{"duplicate", []File{
			{Path: "/m/a.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")},
			{Path: "/m/b.yaml", Data: []byte("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: dflt}\n")},
		}, "/m/b.yaml: document 2: ConfigMap dflt/a is also in /m/a.yaml (document 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseWith(tc.files, "dflt")
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("error %v (%T) is not a *ParseError", err, err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q\nwant prefix %q", err, tc.want)
			}
		})
	}
}

// TestParseAgainstCluster uses the API server's discovery: built-in kinds,
// cluster-scoped kinds and a kind defined by a CRD among the manifests.
func TestParseAgainstCluster(t *testing.T) {
	a := newApplier(t, "parse")
	objs, err := a.Parse([]File{{Path: "/m/all.yaml", Data: []byte(`
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cr, namespace: wrong}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gizmos.parse.example.com}
spec:
  group: parse.example.com
  scope: Cluster
  names: {kind: Gizmo, plural: gizmos}
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]
---
apiVersion: parse.example.com/v1
kind: Gizmo
metadata: {name: g, namespace: wrong}
`)}}, "team")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, objectKey(o))
	}
	want := "/ConfigMap/team/c rbac.authorization.k8s.io/ClusterRole//cr apiextensions.k8s.io/CustomResourceDefinition//gizmos.parse.example.com parse.example.com/Gizmo//g"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
	_, err = a.Parse([]File{{Path: "/m/x.yaml", Data: []byte("apiVersion: nope.example.com/v1\nkind: Nope\nmetadata: {name: nope}\n")}}, "team")
	if !errors.Is(err, ErrUnknownKind) || !strings.HasPrefix(err.Error(), "/m/x.yaml: document 1: unknown kind Nope") {
		t.Errorf("unknown kind: err = %v", err)
	}
}
