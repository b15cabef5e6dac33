package apply

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Manifests come from any commit of any manifest project: parsing,
// namespacing and dependency ordering must never panic or hang, and
// either fail with a *ParseError naming the file or give well-formed
// objects that remember where they came from.
func FuzzParseManifests(f *testing.F) {
	files := readManifests(f, kubePrometheus)
	if len(files) < 80 {
		f.Fatalf("%d kube-prometheus files, want the whole set", len(files))
	}
	for _, file := range files {
		// The large CRDs and the dashboards ConfigMap list make each
		// fuzz input slow; their beginnings still exercise the decoder.
		f.Add(file.Data[:min(len(file.Data), 32<<10)])
	}
	for _, s := range []string{
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n",
		`{"apiVersion":"v1","kind":"ConfigMapList","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}]}`,
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n    config.kubernetes.io/depends-on: /namespaces/default/ConfigMap/b\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  annotations:\n    config.kubernetes.io/depends-on: /namespaces/default/ConfigMap/a\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n    config.kubernetes.io/depends-on: 'x/y/z/w/v/u, ,/'\n",
		"a: &a [*a, *a]\n",
		"---\n---\n# only comments\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {generateName: hook-}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n",
	} {
		f.Add([]byte(s))
	}
	namespaced := func(gvk schema.GroupVersionKind) (bool, error) {
		return gvk.Kind != "Namespace" && gvk.Kind != "ClusterRole", nil
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "/manifests/f.yaml"
		objs, srcs, err := decodeFiles([]File{{Path: path, Data: data}})
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Path != path || !strings.HasPrefix(err.Error(), path+": ") {
				t.Fatalf("error %v: want a *ParseError naming %s", err, path)
			}
			return
		}
		for i, o := range objs {
			if o.GetAPIVersion() == "" || o.GetKind() == "" || (o.GetName() == "" && o.GetGenerateName() == "") || isList(o) {
				t.Fatalf("object %d is not well-formed: %v", i, o.Object)
			}
			src, ok := takeSource(o.DeepCopy())
			if !ok || src != srcs[i] || src.path != path || src.doc < 1 {
				t.Fatalf("object %d: source %+v (%v), decoded as %+v", i, src, ok, srcs[i])
			}
		}
		if err := setNamespaces(objs, srcs, "default", namespaced); err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Path != path {
				t.Fatalf("setNamespaces: %v, want a *ParseError naming %s", err, path)
			}
			return
		}
		before := make([]int, len(objs))
		for i, o := range objs {
			before[i] = ownWave(o)
		}
		if err := orderByDependencies(objs); err != nil {
			if !errors.Is(err, ErrDependencyCycle) && !errors.Is(err, ErrInvalidProject) {
				t.Fatalf("orderByDependencies: unexpected error %v", err)
			}
			return
		}
		for i, o := range objs {
			if ownWave(o) < before[i] {
				t.Fatalf("object %d moved to an earlier wave: %d < %d", i, ownWave(o), before[i])
			}
		}
	})
}
