package apply

import (
	"fmt"

	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// schemas validates custom objects against the CustomResourceDefinitions
// of the same commit (for kinds whose CRD the commit creates or changes,
// which the API server cannot judge yet), as the API server will once the
// CRD is applied: its OpenAPI v3 schema (types, required fields, enums,
// formats, bounds), not its CEL rules (x-kubernetes-validations).
type schemas struct {
	// crds are the commit's CRDs by the kind they define.
	crds map[schema.GroupKind]*unstructured.Unstructured
	// validators by group, version and kind; nil for a version without
	// a schema.
	validators map[schema.GroupVersionKind]validation.SchemaValidator
}

func newSchemas(objs []*unstructured.Unstructured, kinds map[schema.GroupKind]bool) *schemas {
	s := &schemas{crds: map[schema.GroupKind]*unstructured.Unstructured{}, validators: map[schema.GroupVersionKind]validation.SchemaValidator{}}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if gvk.Group != "apiextensions.k8s.io" || gvk.Kind != "CustomResourceDefinition" {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		if gk := (schema.GroupKind{Group: group, Kind: kind}); kinds[gk] {
			s.crds[gk] = o
		}
	}
	return s
}

// validate checks obj against its CRD's schema for its version. checked
// is false when there is no schema to check against (or the CRD does not
// convert: the API server will say why when the CRD is applied).
func (s *schemas) validate(obj *unstructured.Unstructured) (checked bool, err error) {
	gvk := obj.GroupVersionKind()
	v, known := s.validators[gvk]
	if !known {
		v = s.validator(gvk)
		s.validators[gvk] = v
	}
	if v == nil {
		return false, nil
	}
	if errs := validation.ValidateCustomResource(nil, obj.UnstructuredContent(), v); len(errs) > 0 {
		return true, fmt.Errorf("invalid by the CustomResourceDefinition in this commit: %w", errs.ToAggregate())
	}
	return true, nil
}

func (s *schemas) validator(gvk schema.GroupVersionKind) validation.SchemaValidator {
	u := s.crds[gvk.GroupKind()]
	if u == nil {
		return nil
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &crd); err != nil {
		return nil
	}
	for _, ver := range crd.Spec.Versions {
		if ver.Name != gvk.Version || ver.Schema == nil || ver.Schema.OpenAPIV3Schema == nil {
			continue
		}
		var internal apiextensions.JSONSchemaProps
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(ver.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
			return nil
		}
		v, _, err := validation.NewSchemaValidator(&internal)
		if err != nil {
			return nil
		}
		return v
	}
	return nil
}
