package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/util/openapi"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/diff"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
)

// kubectl is gitops-engine's kube.Kubectl with every call that reads or
// writes one object made through the Applier's shared clients, instead of
// gitops-engine's default, which runs kubectl's apply code with a
// temporary kubeconfig and manifest file per object and new clients per
// call. Applies are always server-side applies (objects over 262 KB cannot
// carry kubectl's last-applied-configuration annotation). Listing APIs,
// the server version and conversions are left to kube.KubectlCmd.
type kubectl struct {
	*kube.KubectlCmd
	c       *clients
	manager string
	// serverDryRun: the project's dry_run_strategy is server, so dry-run
	// applies go to the API server instead of being skipped.
	serverDryRun bool
	// applied receives what the API server answered to each (non dry-run)
	// apply; nil outside a sync.
	applied *appliedObjects
	// invalidated is set (for the cluster cache's kubectl only) from just
	// before the Applier invalidates the cache until the cache re-lists;
	// see GetAPIResources.
	invalidated *atomic.Bool
}

var (
	_ kube.Kubectl            = (*kubectl)(nil)
	_ kube.ResourceOperations = (*resourceOps)(nil)
)

// appliedObjects records the API server's answers to the applies of one
// sync: the freshest state of those objects, fresher than the cache.
type appliedObjects struct {
	mu   sync.Mutex // guards objs
	objs map[kube.ResourceKey]*unstructured.Unstructured
}

func (a *appliedObjects) record(obj *unstructured.Unstructured) {
	if a == nil || obj == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.objs[kube.GetResourceKey(obj)] = obj
}

func (a *appliedObjects) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.objs)
}

func (a *appliedObjects) snapshot() map[kube.ResourceKey]*unstructured.Unstructured {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[kube.ResourceKey]*unstructured.Unstructured, len(a.objs))
	for k, v := range a.objs {
		out[k] = v
	}
	return out
}

// ManageResources returns the per-object operations; there is nothing to
// clean up.
func (k *kubectl) ManageResources(_ *rest.Config) (kube.ResourceOperations, func(), error) {
	return &resourceOps{k: k}, func() {}, nil
}

// ManageServerSideDiffDryRuns is not used: diffs are computed locally.
func (k *kubectl) ManageServerSideDiffDryRuns(_ *rest.Config) (diff.KubeApplier, func(), error) {
	return nil, nil, errors.New("server-side diff is not supported by agentk")
}

// LoadOpenAPISchema loads nothing. gitops-engine's cluster cache loads and
// parses the whole OpenAPI document on every cache sync and on every CRD
// event; only structured-merge and server-side diffs use it, and agentk
// uses neither.
func (k *kubectl) LoadOpenAPISchema(_ *rest.Config) (openapi.Resources, *managedfields.GvkParser, error) {
	return nil, nil, nil
}

// errInvalidated stops gitops-engine from starting watches on an
// invalidated cluster cache.
var errInvalidated = errors.New("cluster cache invalidated: watches start at the next re-list")

// GetAPIResources refuses while the cluster cache is invalidated.
// gitops-engine's Invalidate sets the cache's map of watched APIs to nil,
// and a goroutine it starts on every APIService event (retrying for up to
// 25 s) then writes to that nil map and panics, killing the process; it
// calls GetAPIResources just before. Refusing also keeps a stopped cache
// from starting new watches.
func (k *kubectl) GetAPIResources(config *rest.Config, preferred bool, filter kube.ResourceFilter) ([]kube.APIResourceInfo, error) {
	if k.invalidated != nil && k.invalidated.Load() {
		return nil, errInvalidated
	}
	return k.KubectlCmd.GetAPIResources(config, preferred, filter)
}

// GetServerVersion is the first call of a cache re-list, made after the
// map of watched APIs is made anew: watches may start again.
func (k *kubectl) GetServerVersion(config *rest.Config) (string, error) {
	if k.invalidated != nil {
		k.invalidated.Store(false)
	}
	return k.KubectlCmd.GetServerVersion(config)
}

// NewDynamicClient gives the cluster cache a client of its own (its own
// rate limiter for lists and watches) on the shared transport.
func (k *kubectl) NewDynamicClient(_ *rest.Config) (dynamic.Interface, error) {
	return dynamic.NewForConfig(k.c.config)
}

// resource is the client for one object. A kind the cluster does not
// serve is a NotFound API error, as gitops-engine expects.
func (k *kubectl) resource(gvk schema.GroupVersionKind, namespace string) (dynamic.ResourceInterface, *meta.RESTMapping, error) {
	ri, m, err := k.c.resource(gvk, namespace)
	if errors.Is(err, ErrUnknownKind) {
		return nil, nil, apierrors.NewNotFound(schema.GroupResource{Group: gvk.Group, Resource: gvk.Kind}, "")
	}
	return ri, m, err
}

func (k *kubectl) GetResource(ctx context.Context, _ *rest.Config, gvk schema.GroupVersionKind, name, namespace string) (*unstructured.Unstructured, error) {
	ri, _, err := k.resource(gvk, namespace)
	if err != nil {
		return nil, err
	}
	return ri.Get(ctx, name, metav1.GetOptions{})
}

func (k *kubectl) DeleteResource(ctx context.Context, _ *rest.Config, gvk schema.GroupVersionKind, name, namespace string, opts metav1.DeleteOptions) error {
	ri, _, err := k.resource(gvk, namespace)
	if err != nil {
		return err
	}
	release, err := k.c.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	return ri.Delete(ctx, name, opts)
}

func (k *kubectl) CreateResource(ctx context.Context, _ *rest.Config, gvk schema.GroupVersionKind, _, namespace string, obj *unstructured.Unstructured, opts metav1.CreateOptions, subresources ...string) (*unstructured.Unstructured, error) {
	ri, _, err := k.resource(gvk, namespace)
	if err != nil {
		return nil, err
	}
	return ri.Create(ctx, obj, opts, subresources...)
}

func (k *kubectl) PatchResource(ctx context.Context, _ *rest.Config, gvk schema.GroupVersionKind, name, namespace string, pt types.PatchType, data []byte, subresources ...string) (*unstructured.Unstructured, error) {
	ri, _, err := k.resource(gvk, namespace)
	if err != nil {
		return nil, err
	}
	return ri.Patch(ctx, name, pt, data, metav1.PatchOptions{FieldManager: k.manager}, subresources...)
}

// resourceOps applies, creates, replaces and updates objects for a sync.
type resourceOps struct {
	k *kubectl
}

// target returns the client for obj and the object to send: without a
// namespace when its kind is cluster-scoped (gitops-engine gives every
// object the default namespace).
func (o *resourceOps) target(obj *unstructured.Unstructured) (dynamic.ResourceInterface, *meta.RESTMapping, *unstructured.Unstructured, error) {
	ri, m, err := o.k.c.resource(obj.GroupVersionKind(), obj.GetNamespace())
	// A CRD applied moments ago may not be served yet (gitops-engine waits
	// at most 3 s for it to be established).
	for deadline := time.Now().Add(kindWait); errors.Is(err, ErrUnknownKind) && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		ri, m, err = o.k.c.resource(obj.GroupVersionKind(), obj.GetNamespace())
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", describe(obj), err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace && obj.GetNamespace() != "" {
		obj = obj.DeepCopy()
		obj.SetNamespace("")
	}
	return ri, m, obj, nil
}

func dryRunOption(s cmdutil.DryRunStrategy) []string {
	if s == cmdutil.DryRunNone {
		return nil
	}
	return []string{metav1.DryRunAll}
}

func fieldValidation(validate bool) string {
	if validate {
		return metav1.FieldValidationStrict
	}
	return metav1.FieldValidationIgnore
}

func message(m *meta.RESTMapping, obj *unstructured.Unstructured, verb string, s cmdutil.DryRunStrategy) string {
	msg := strings.ToLower(m.GroupVersionKind.Kind) + "/" + obj.GetName() + " " + verb
	switch s {
	case cmdutil.DryRunClient:
		msg += " (dry run)"
	case cmdutil.DryRunServer:
		msg += " (server dry run)"
	}
	return msg
}

// ApplyResource server-side applies obj with force (GitOps owns the fields
// it sets). A client dry run, which gitops-engine runs over every object
// before the first wave, asks nothing of the API server: the kind was
// already checked. With dry_run_strategy server every dry run is a
// server-side dry-run apply.
func (o *resourceOps) ApplyResource(ctx context.Context, obj *unstructured.Unstructured, s cmdutil.DryRunStrategy, _, validate, _ bool, manager string) (string, error) {
	ri, m, obj, err := o.target(obj)
	if err != nil {
		return "", err
	}
	if s == cmdutil.DryRunClient {
		if !o.k.serverDryRun {
			return message(m, obj, "serverside-applied", s), nil
		}
		s = cmdutil.DryRunServer
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("%s: %w", describe(obj), err)
	}
	if manager == "" {
		manager = o.k.manager
	}
	force := true
	release, err := o.k.c.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	out, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager:    manager,
		Force:           &force,
		DryRun:          dryRunOption(s),
		FieldValidation: fieldValidation(validate),
	})
	if err != nil {
		return "", err
	}
	if s == cmdutil.DryRunNone {
		o.k.applied.record(out)
	}
	return message(m, obj, "serverside-applied", s), nil
}

// CreateResource creates obj (the Replace sync option on a new object).
func (o *resourceOps) CreateResource(ctx context.Context, obj *unstructured.Unstructured, s cmdutil.DryRunStrategy, validate bool) (string, error) {
	ri, m, obj, err := o.target(obj)
	if err != nil {
		return "", err
	}
	if s == cmdutil.DryRunClient && !o.k.serverDryRun {
		return message(m, obj, "created", s), nil
	}
	out, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldManager: o.k.manager, DryRun: dryRunOption(s), FieldValidation: fieldValidation(validate)})
	if err != nil {
		return "", err
	}
	if s == cmdutil.DryRunNone {
		o.k.applied.record(out)
	}
	return message(m, obj, "created", s), nil
}

// ReplaceResource replaces obj (the Replace sync option), creating it if it
// is gone; with force it deletes and recreates it.
func (o *resourceOps) ReplaceResource(ctx context.Context, obj *unstructured.Unstructured, s cmdutil.DryRunStrategy, force bool) (string, error) {
	ri, m, obj, err := o.target(obj)
	if err != nil {
		return "", err
	}
	if s == cmdutil.DryRunClient && !o.k.serverDryRun {
		return message(m, obj, "replaced", s), nil
	}
	if force && s == cmdutil.DryRunNone {
		policy := metav1.DeletePropagationBackground
		if err := ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
			return "", err
		}
	} else {
		live, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
		switch {
		case err == nil:
			obj = obj.DeepCopy()
			obj.SetResourceVersion(live.GetResourceVersion())
			out, err := ri.Update(ctx, obj, metav1.UpdateOptions{FieldManager: o.k.manager, DryRun: dryRunOption(s)})
			if err != nil {
				return "", err
			}
			if s == cmdutil.DryRunNone {
				o.k.applied.record(out)
			}
			return message(m, obj, "replaced", s), nil
		case !apierrors.IsNotFound(err):
			return "", err
		}
	}
	out, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldManager: o.k.manager, DryRun: dryRunOption(s)})
	if err != nil {
		return "", err
	}
	if s == cmdutil.DryRunNone {
		o.k.applied.record(out)
	}
	return message(m, obj, "created", s), nil
}

// UpdateResource updates obj (gitops-engine uses it to replace CRDs and
// namespaces, which must never be deleted and recreated).
func (o *resourceOps) UpdateResource(ctx context.Context, obj *unstructured.Unstructured, s cmdutil.DryRunStrategy) (*unstructured.Unstructured, error) {
	ri, _, obj, err := o.target(obj)
	if err != nil {
		return nil, err
	}
	if s == cmdutil.DryRunClient && !o.k.serverDryRun {
		return obj, nil
	}
	out, err := ri.Update(ctx, obj, metav1.UpdateOptions{FieldManager: o.k.manager, DryRun: dryRunOption(s)})
	if err == nil && s == cmdutil.DryRunNone {
		o.k.applied.record(out)
	}
	return out, err
}
