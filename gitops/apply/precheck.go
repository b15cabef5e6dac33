package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
)

// preCheckParallel is how many dry runs the pre-check has in flight.
const preCheckParallel = 8

// preCheck has the API server validate, before anything is written, every
// target this sync would create or change: a server-side apply with
// dryRun=All, as the real apply will be sent. One rejection fails the
// whole commit with a *CheckError naming file, document and object.
//
// Custom objects of a CustomResourceDefinition the same commit creates
// or changes are checked against that CRD's schema here (the API server
// would judge them by the old schema, or not know the kind). Objects in a
// namespace the same commit creates cannot be dry-run: they are checked
// when applied.
func (s *syncRun) preCheck(ctx context.Context) error {
	live, err := s.a.cache.GetManagedLiveObjs(s.targets, s.isManaged)
	if err != nil {
		return fmt.Errorf("read live objects: %w", err)
	}
	// admit removes refused targets from the map it is given: keep live.
	admittedLive := make(map[kube.ResourceKey]*unstructured.Unstructured, len(live))
	for k, v := range live {
		admittedLive[k] = v
	}
	admitted := s.admit(admittedLive)

	newNamespaces := map[string]bool{}
	changedKinds := map[schema.GroupKind]bool{}
	for _, t := range admitted {
		k := kube.GetResourceKey(t)
		l := live[k]
		switch {
		case k.Group == "" && k.Kind == "Namespace" && l == nil:
			newNamespaces[k.Name] = true
		case k.Group == "apiextensions.k8s.io" && k.Kind == "CustomResourceDefinition" && !s.unchanged(t, l):
			group, _, _ := unstructured.NestedString(t.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(t.Object, "spec", "names", "kind")
			changedKinds[schema.GroupKind{Group: group, Kind: kind}] = true
		}
	}
	var (
		todo      []*unstructured.Unstructured
		unchecked int
		local     = newSchemas(admitted, changedKinds)
		// localRejections come from the commit's CRD schemas, rejections
		// (by index in todo) from the API server.
		localRejections []Rejection
		mu              sync.Mutex // guards rejections and failure
		rejections      = map[int]Rejection{}
		failure         error
		next            atomic.Int64
		wg              sync.WaitGroup
	)
	for _, t := range admitted {
		k := kube.GetResourceKey(t)
		switch {
		case t.GetName() == "", s.unchanged(t, live[k]):
		case changedKinds[k.GroupKind()]:
			// The API server would judge it by the old schema, or not
			// know the kind: judge it by the commit's CRD here.
			if checked, err := local.validate(t); err != nil {
				src := s.sources[k]
				localRejections = append(localRejections, Rejection{Path: src.path, Document: src.doc, Object: describe(t), Err: err})
			} else if !checked {
				unchecked++
			}
		case newNamespaces[t.GetNamespace()]:
			unchecked++
		default:
			todo = append(todo, t)
		}
	}
	if len(todo) == 0 && len(localRejections) == 0 {
		return nil
	}
	for range min(preCheckParallel, len(todo)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(todo) || ctx.Err() != nil {
					return
				}
				err := s.dryRun(ctx, todo[i])
				if err == nil {
					continue
				}
				mu.Lock()
				if rejected(err) {
					src := s.sources[kube.GetResourceKey(todo[i])]
					rejections[i] = Rejection{Path: src.path, Document: src.doc, Object: describe(todo[i]), Err: err}
				} else if failure == nil {
					failure = fmt.Errorf("pre-check %s: %w", describe(todo[i]), err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(rejections) > 0 || len(localRejections) > 0 {
		ce := &CheckError{Rejections: localRejections}
		for i := range todo {
			if r, ok := rejections[i]; ok {
				ce.Rejections = append(ce.Rejections, r)
			}
		}
		return ce
	}
	if failure != nil {
		return failure
	}
	s.log.Debug("GitOps: pre-check passed", "checked", len(todo), "checked_at_apply", unchecked)
	return nil
}

// unchanged: the live object carries the target's manifest hash and is
// still at the resourceVersion at which it was found equal.
func (s *syncRun) unchanged(t, l *unstructured.Unstructured) bool {
	if l == nil {
		return false
	}
	hash := t.GetAnnotations()[AnnotationManifestHash]
	if l.GetAnnotations()[AnnotationManifestHash] != hash {
		return false
	}
	v, ok := s.verified[kube.GetResourceKey(l)]
	return ok && v.hash == hash && v.resourceVersion == l.GetResourceVersion()
}

// dryRun sends obj as a server-side apply with dryRun=All.
func (s *syncRun) dryRun(ctx context.Context, obj *unstructured.Unstructured) error {
	ri, m, err := s.writer.resource(obj.GroupVersionKind(), obj.GetNamespace())
	if err != nil {
		return err
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace && obj.GetNamespace() != "" {
		obj = obj.DeepCopy()
		obj.SetNamespace("")
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return err
	}
	release, err := s.writer.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	force := true
	_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager:    FieldManager,
		Force:           &force,
		DryRun:          []string{metav1.DryRunAll},
		FieldValidation: fieldValidation(false),
	})
	return err
}

// rejected reports whether err is the API server refusing the object
// itself (so the commit must change), not a passing failure.
func rejected(err error) bool {
	switch {
	case errors.Is(err, ErrUnknownKind),
		apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsForbidden(err),
		apierrors.IsNotFound(err), apierrors.IsAlreadyExists(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsNotAcceptable(err), apierrors.IsRequestEntityTooLargeError(err),
		apierrors.IsUnsupportedMediaType(err), apierrors.IsConflict(err):
		return true
	case apierrors.IsInternalError(err) && strings.Contains(err.Error(), "failed to create typed patch object"):
		// A value of the wrong type (replicas: "abc") fails server-side
		// apply's typed conversion, which the API server answers with 500.
		return true
	}
	return false
}
