package apply

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// File is one manifest file of a project at a commit.
type File struct {
	// Path names the file in errors, e.g. /manifests/app.yaml.
	Path string
	// Data is YAML (one or more documents) or JSON.
	Data []byte
}

// source is where an object came from, for errors.
type source struct {
	path string
	doc  int
}

// Parse decodes manifest files into objects: multi-document YAML and JSON,
// with List kinds (kind: List, ConfigMapList, ...) expanded into their
// items and empty documents skipped. Namespaced objects without a
// namespace get defaultNamespace; cluster-scoped objects lose any
// namespace they carry. Which kinds are namespaced comes from the cluster's
// discovery and from CustomResourceDefinitions among the manifests.
//
// A file that cannot be decoded, an object without apiVersion, kind or
// name, a kind that nothing defines and the same object twice are each a
// *ParseError naming the file and the 1-based document
// ("/manifests/app.yaml: document 2: ..."); then no object is returned.
func (a *Applier) Parse(files []File, defaultNamespace string) ([]*unstructured.Unstructured, error) {
	objs, srcs, err := decodeFiles(files)
	if err != nil {
		return nil, err
	}
	if defaultNamespace == "" {
		defaultNamespace = "default"
	}
	if err := setNamespaces(objs, srcs, defaultNamespace, a.clients.namespaced); err != nil {
		return nil, err
	}
	return objs, nil
}

// decodeFiles decodes every file; srcs[i] is where objs[i] came from.
func decodeFiles(files []File) (objs []*unstructured.Unstructured, srcs []source, err error) {
	for _, f := range files {
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(f.Data)))
		for doc := 1; ; doc++ {
			chunk, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, nil, &ParseError{Path: f.Path, Document: doc, Err: err}
			}
			decoded, err := decodeDocument(chunk)
			if err != nil {
				return nil, nil, &ParseError{Path: f.Path, Document: doc, Err: err}
			}
			for _, o := range decoded {
				setSource(o, f.Path, doc)
				objs = append(objs, o)
				srcs = append(srcs, source{path: f.Path, doc: doc})
			}
		}
	}
	return objs, srcs, nil
}

// decodeDocument decodes one YAML or JSON document: nothing for an empty
// one, the items of a List, or one object.
func decodeDocument(chunk []byte) ([]*unstructured.Unstructured, error) {
	js, err := yaml.YAMLToJSON(chunk)
	if err != nil {
		return nil, err
	}
	var v any
	// utiljson keeps integers as int64, as unstructured objects need.
	if err := utiljson.Unmarshal(js, &v); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a Kubernetes object: want a mapping with apiVersion, kind and metadata")
	}
	if len(m) == 0 {
		return nil, nil
	}
	obj, err := toObject(m)
	if err != nil {
		return nil, err
	}
	if !isList(obj) {
		return []*unstructured.Unstructured{obj}, nil
	}
	items, _ := m["items"].([]any)
	out := make([]*unstructured.Unstructured, 0, len(items))
	for i, it := range items {
		im, ok := it.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s items[%d]: not a Kubernetes object", obj.GetKind(), i)
		}
		item, err := toObject(im)
		if err != nil {
			return nil, fmt.Errorf("%s items[%d]: %w", obj.GetKind(), i, err)
		}
		if isList(item) {
			return nil, fmt.Errorf("%s items[%d]: a list inside a list", obj.GetKind(), i)
		}
		out = append(out, item)
	}
	return out, nil
}

// isList: kind List or any kind ending in List (ConfigMapList, RoleList)
// that has an items array.
func isList(obj *unstructured.Unstructured) bool {
	if !strings.HasSuffix(obj.GetKind(), "List") {
		return false
	}
	_, ok := obj.Object["items"].([]any)
	return ok
}

func toObject(m map[string]any) (*unstructured.Unstructured, error) {
	obj := &unstructured.Unstructured{Object: m}
	switch {
	case obj.GetAPIVersion() == "":
		return nil, errors.New("apiVersion: missing")
	case obj.GetKind() == "":
		return nil, errors.New("kind: missing")
	}
	if _, err := schema.ParseGroupVersion(obj.GetAPIVersion()); err != nil {
		return nil, fmt.Errorf("apiVersion: %w", err)
	}
	if isList(obj) {
		return obj, nil
	}
	if md, ok := m["metadata"]; ok {
		if _, ok := md.(map[string]any); !ok {
			return nil, fmt.Errorf("%s: metadata: not a mapping", obj.GetKind())
		}
	}
	if obj.GetName() == "" && obj.GetGenerateName() == "" {
		return nil, fmt.Errorf("%s: metadata.name: missing", obj.GetKind())
	}
	return obj, nil
}

// scopeFunc answers whether a kind is namespaced, or fails with
// ErrUnknownKind (wrapped) when the cluster does not serve it.
type scopeFunc func(gvk schema.GroupVersionKind) (bool, error)

// setNamespaces gives namespaced objects without a namespace the default,
// clears the namespace of cluster-scoped ones and rejects duplicates.
// CustomResourceDefinitions among objs define kinds the cluster may not
// serve yet.
func setNamespaces(objs []*unstructured.Unstructured, srcs []source, defaultNamespace string, clusterScope scopeFunc) error {
	defined := crdScopes(objs)
	seen := make(map[string]source, len(objs))
	for i, obj := range objs {
		gvk := obj.GroupVersionKind()
		namespaced, ok := defined[gvk.GroupKind()]
		if !ok {
			var err error
			namespaced, err = clusterScope(gvk)
			if err != nil {
				if errors.Is(err, ErrUnknownKind) {
					return &ParseError{Path: srcs[i].path, Document: srcs[i].doc, Err: err}
				}
				return err
			}
		}
		switch {
		case !namespaced:
			obj.SetNamespace("")
		case obj.GetNamespace() == "":
			obj.SetNamespace(defaultNamespace)
		}
		if obj.GetName() == "" { // generateName: a hook, named at sync time
			continue
		}
		key := objectKey(obj)
		if prev, dup := seen[key]; dup {
			where := prev.path
			if prev.doc > 0 {
				where = fmt.Sprintf("%s (document %d)", prev.path, prev.doc)
			}
			return &ParseError{Path: srcs[i].path, Document: srcs[i].doc,
				Err: fmt.Errorf("%s is also in %s", describe(obj), where)}
		}
		seen[key] = srcs[i]
	}
	return nil
}

// crdScopes maps the kinds that CustomResourceDefinitions in objs define to
// whether they are namespaced.
func crdScopes(objs []*unstructured.Unstructured) map[schema.GroupKind]bool {
	out := map[schema.GroupKind]bool{}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if gvk.Group != "apiextensions.k8s.io" || gvk.Kind != "CustomResourceDefinition" {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		if kind != "" {
			out[schema.GroupKind{Group: group, Kind: kind}] = scope != string(meta.RESTScopeNameRoot) && scope != "Cluster"
		}
	}
	return out
}

// objectKey identifies an object: group, kind, namespace, name.
func objectKey(o *unstructured.Unstructured) string {
	gvk := o.GroupVersionKind()
	return gvk.Group + "/" + gvk.Kind + "/" + o.GetNamespace() + "/" + o.GetName()
}

// describe names an object for people: "ConfigMap ns/name",
// "ClusterRole name", with the group when there is one.
func describe(o *unstructured.Unstructured) string {
	return describeKey(o.GroupVersionKind().GroupKind(), o.GetNamespace(), o.GetName())
}

func describeKey(gk schema.GroupKind, namespace, name string) string {
	kind := gk.Kind
	if gk.Group != "" {
		kind += "." + gk.Group
	}
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

// annotationSource carries an object's file and document from Parse to
// Sync, for the pre-check's messages. Sync removes it before anything is
// hashed or sent.
const annotationSource = "internal.gitops.kubetunnel.io/source"

func setSource(o *unstructured.Unstructured, path string, doc int) {
	ann := o.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[annotationSource] = strconv.Itoa(doc) + ":" + path
	o.SetAnnotations(ann)
}

// takeSource removes annotationSource from o and returns what it said.
func takeSource(o *unstructured.Unstructured) (source, bool) {
	ann := o.GetAnnotations()
	v, ok := ann[annotationSource]
	if !ok {
		return source{}, false
	}
	delete(ann, annotationSource)
	if len(ann) == 0 {
		ann = nil
	}
	o.SetAnnotations(ann)
	docStr, path, _ := strings.Cut(v, ":")
	doc, _ := strconv.Atoi(docStr)
	return source{path: path, doc: doc}, true
}
