package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/diff"
	gsync "github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync/common"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync/hook"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/tracing"

	"kubetunnel/agentcfg"
)

// Result is what one Sync did.
type Result struct {
	// Commit is the commit that was synced.
	Commit string
	// Applied objects were created or changed (with a dry run: would be).
	// Pruned objects were deleted (would be). Unchanged objects already
	// matched their manifests and were not sent to the API server.
	Applied, Pruned, Unchanged int
	// Skipped objects are of kinds the project's resource_inclusions and
	// resource_exclusions leave out.
	Skipped int
	// Health is the worst health of the project's objects after the sync,
	// by gitops-engine's assessment: Healthy, Suspended, Progressing,
	// Missing, Degraded or Unknown. Objects without a health assessment
	// (ConfigMaps, ...) count as Healthy.
	Health string
	// Failed is set when an object could not be applied or pruned, an
	// object was refused by inventory_policy, a hook failed or a timeout
	// was reached; Reason says which.
	Failed bool
	Reason string
	// Failure says what kind of failure it is (FailureNone when not
	// Failed): whether to retry.
	Failure Failure
	// PendingPrunes are objects this project pruned (now or before) that
	// are still there, waiting for finalizers. Sync does not wait for
	// them; past prune_timeout they make the sync Failed.
	PendingPrunes []PendingPrune
}

// Timings that tests may shorten.
var (
	// stepInterval is the longest wait between two steps of a sync with
	// waves or hooks; a change of one of the project's objects ends it
	// sooner.
	stepInterval = time.Second
	// cacheCatchUp bounds the wait for the cluster cache to show the
	// objects a sync applied, so the next sync diffs against them.
	cacheCatchUp = 10 * time.Second
	// terminateTimeout bounds the clean-up of a sync that timed out.
	terminateTimeout = 30 * time.Second
	// kindWait bounds the wait for the API server to serve a kind whose
	// CustomResourceDefinition was just applied.
	kindWait = 10 * time.Second
)

// Sync makes the cluster match objs for project p at commit: it applies
// (server-side, field manager "agentk") the objects that differ from the
// cluster, in gitops-engine's order (CustomResourceDefinitions and
// namespaces first, then by kind; argocd.argoproj.io/sync-wave and hook
// annotations are honoured, each wave waiting for the previous one to be
// healthy) and, with p.Prune, deletes the objects the project managed
// that objs no longer contains. objs are not modified.
//
// objs should come from Parse. An error means nothing was done (an
// invalid project, a kind the cluster does not know, the cluster cache
// not ready, the Applier stopped) or ctx ended; a sync that ran and
// failed has Result.Failed set instead.
func (a *Applier) Sync(ctx context.Context, p Project, commit string, objs []*unstructured.Unstructured) (Result, error) {
	res := Result{Commit: commit}
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return res, err
	}
	m := mark(a.agent, p)
	unlock := a.lockProject(m)
	defer unlock()
	targets, sources, skipped, err := a.prepare(p, m, objs)
	if err != nil {
		return res, err
	}
	res.Skipped = skipped
	if len(targets) == 0 && p.Prune && !p.AllowEmpty {
		// The signature of a typo'd glob or a wrong ref: pruning now would
		// delete everything the project applied.
		return res, fmt.Errorf("%w: the project has no object to apply (%d left out by resource_inclusions/exclusions); nothing was applied or pruned: fix paths, or set allow_empty: true to prune everything", ErrNoManifests, skipped)
	}
	if err := a.watch(m, p); err != nil {
		return res, err
	}
	a.cacheMu.RLock()
	defer a.cacheMu.RUnlock()
	if a.stopped {
		return res, ErrStopped
	}
	if err := a.cache.EnsureSynced(); err != nil {
		return res, fmt.Errorf("cluster cache: %w", err)
	}
	s := &syncRun{
		a:       a,
		p:       p,
		mark:    m,
		commit:  commit,
		log:     a.logger.With("project", p.Name, "commit", commit),
		targets: targets,
		sources: sources,
		refused: map[kube.ResourceKey]string{},
		applied: &appliedObjects{objs: map[kube.ResourceKey]*unstructured.Unstructured{}},
	}
	writer, err := a.writer(p)
	if err != nil {
		return res, err
	}
	s.writer = writer
	s.kubectl = &kubectl{
		KubectlCmd:   &kube.KubectlCmd{Log: a.engineLog, Tracer: tracing.NopTracer{}},
		c:            writer,
		manager:      FieldManager,
		serverDryRun: p.DryRunStrategy == agentcfg.DryRunServer,
		applied:      s.applied,
	}
	a.mu.Lock()
	s.verified = a.verified[m]
	a.mu.Unlock()
	out, err := s.run(ctx)
	out.Skipped = skipped
	return out, err
}

// prepare copies objs, fixes their namespaces, leaves out the kinds the
// project does not manage and stamps the project's mark and the manifest
// hash on each.
func (a *Applier) prepare(p Project, m string, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, map[kube.ResourceKey]source, int, error) {
	copies := make([]*unstructured.Unstructured, 0, len(objs))
	srcs := make([]source, 0, len(objs))
	for i, o := range objs {
		c := o.DeepCopy()
		src, ok := takeSource(c)
		if !ok {
			src = source{path: fmt.Sprintf("objs[%d]", i)}
		}
		copies = append(copies, c)
		srcs = append(srcs, src)
	}
	if err := setNamespaces(copies, srcs, p.DefaultNamespace, a.clients.namespaced); err != nil {
		return nil, nil, 0, err
	}
	if err := orderByDependencies(copies); err != nil {
		return nil, nil, 0, err
	}
	targets := copies[:0]
	sources := make(map[kube.ResourceKey]source, len(copies))
	skipped := 0
	for i, o := range copies {
		gvk := o.GroupVersionKind()
		if !p.manages(gvk.Group, gvk.Kind) {
			skipped++
			continue
		}
		ann := o.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		delete(ann, AnnotationManifestHash)
		ann[AnnotationManagedBy] = m
		o.SetAnnotations(ann)
		data, err := json.Marshal(o.Object)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("%s: %w", describe(o), err)
		}
		sum := sha256.Sum256(data)
		ann[AnnotationManifestHash] = hex.EncodeToString(sum[:16])
		o.SetAnnotations(ann)
		targets = append(targets, o)
		sources[kube.GetResourceKey(o)] = srcs[i]
	}
	return targets, sources, skipped, nil
}

// syncRun is one Sync in progress.
type syncRun struct {
	a       *Applier
	p       Project
	mark    string
	commit  string
	log     *slog.Logger
	targets []*unstructured.Unstructured
	// writer sends the project's writes (as its service_account, if set).
	writer *clients
	// sources say where each target came from (file, document).
	sources map[kube.ResourceKey]source
	kubectl *kubectl
	applied *appliedObjects
	// refused are targets inventory_policy keeps us from taking over, with
	// the reason.
	refused map[kube.ResourceKey]string
	// verified is the project's verified map from the previous sync
	// (read-only here).
	verified map[kube.ResourceKey]verifiedState
	// nowVerified collects the objects found unchanged by this sync.
	nowVerified map[kube.ResourceKey]verifiedState
	// live is the last read of the live objects (admitted, managed).
	live map[kube.ResourceKey]*unstructured.Unstructured
	// deleting are the objects already being deleted at the first step:
	// gitops-engine reports them pruned again, but this sync did not.
	deleting map[kube.ResourceKey]bool
	// skipHooks is decided at the first step: hooks run only when some
	// object is created or changed.
	skipHooks *bool
}

// opState carries a sync operation from one sync context to the next.
type opState struct {
	phase     common.OperationPhase
	message   string
	results   []common.ResourceSyncResult
	startedAt metav1.Time
}

func (s *syncRun) isManaged(r *cache.Resource) bool {
	return markOf(r) == s.mark
}

// run drives gitops-engine's sync: each step reads the live state afresh
// from the cache and runs one sync context step from the state the
// previous step left (engine.Sync keeps its first snapshot and never
// advances past a wave).
func (s *syncRun) run(parent context.Context) (Result, error) {
	res := Result{Commit: s.commit}
	start := time.Now()
	ctx, cancel := context.WithTimeout(parent, s.p.ReconcileTimeout)
	defer cancel()

	changed := make(chan struct{}, 1)
	unsubscribe := s.a.cache.OnResourceUpdated(func(newRes, oldRes *cache.Resource, _ map[kube.ResourceKey]*cache.Resource) {
		// Runs under the cache's lock: no blocking, no cache calls.
		r := newRes
		if r == nil {
			r = oldRes
		}
		if markOf(r) == s.mark || (oldRes != nil && markOf(oldRes) == s.mark) {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})
	defer unsubscribe()

	if !s.p.SkipPreCheck && s.p.DryRunStrategy == agentcfg.DryRunNone {
		if err := s.preCheck(ctx); err != nil {
			if parent.Err() != nil {
				return res, parent.Err()
			}
			return res, err
		}
	}

	state := opState{startedAt: metav1.Now()}
	steps, appliedBefore := 0, 0
	for {
		steps++
		sc, err := s.newSyncContext(ctx, state)
		if err != nil {
			if parent.Err() != nil {
				return res, parent.Err()
			}
			return res, err
		}
		sc.Sync(ctx)
		state.phase, state.message, state.results = sc.GetState()
		if state.phase.Completed() {
			break
		}
		if waitsOnlyForDeletion(state.message) {
			// Everything else is done; a pruned object held by a
			// finalizer (or a foreground deletion) would hold the project
			// until reconcile_timeout. It is reported as a pending prune
			// instead, and the next sync does not wait for it either.
			state.phase, state.message = common.OperationSucceeded, ""
			break
		}
		// The next step needs the cache to show what this one applied;
		// then, if this step applied nothing, it waits for a change of
		// one of the project's objects (a hook completing, a Deployment
		// becoming available) or stepInterval.
		if n := s.applied.len(); n > appliedBefore {
			appliedBefore = n
			s.waitCache(ctx, changed)
		} else {
			select {
			case <-ctx.Done():
			case <-changed:
			case <-time.After(stepInterval):
			}
		}
		if ctx.Err() != nil {
			s.terminate(state)
			out := s.result(state)
			out.Health = s.health(s.p.DryRunStrategy != agentcfg.DryRunNone)
			if parent.Err() != nil {
				return out, parent.Err()
			}
			out.Failed = true
			out.Failure = FailureRetryable
			out.Reason = fmt.Sprintf("reconcile_timeout (%s) reached: %s", s.p.ReconcileTimeout, state.message)
			return out, nil
		}
	}
	out := s.result(state)
	dryRun := s.p.DryRunStrategy != agentcfg.DryRunNone
	if !dryRun {
		// The next sync diffs against the cache: let it show what this one
		// did. Then wait (up to prune_timeout) for pruned objects to go.
		s.waitCache(parent, changed)
		out.PendingPrunes = s.settlePrunes(parent, changed, state.results)
		if msg := s.overdue(out.PendingPrunes); msg != "" {
			out.Failed = true
			out.Reason = joinReasons(out.Reason, msg)
		}
		for _, pp := range out.PendingPrunes {
			s.log.Warn("GitOps: pruned object not gone yet", "object", pp.Object, "finalizers", pp.Finalizers, "since", pp.Since.UTC().Format(time.RFC3339))
		}
		s.remember(state.results)
	}
	out.Health = s.health(dryRun)
	if out.Failed {
		out.Failure = FailureObjects
	}
	s.log.Debug("GitOps: sync done", "steps", steps, "applied", out.Applied, "pruned", out.Pruned,
		"unchanged", out.Unchanged, "health", out.Health, "failed", out.Failed, "duration", time.Since(start).Round(time.Millisecond))
	return out, parent.Err()
}

// newSyncContext reads the live state, applies inventory_policy, diffs and
// builds a sync context that resumes from state.
func (s *syncRun) newSyncContext(ctx context.Context, state opState) (gsync.SyncContext, error) {
	live, err := s.a.cache.GetManagedLiveObjs(s.targets, s.isManaged)
	if err != nil {
		return nil, fmt.Errorf("read live objects: %w", err)
	}
	targets := s.admit(live)
	for k := range live {
		if !s.p.manages(k.Group, k.Kind) {
			delete(live, k)
		}
	}
	s.live = make(map[kube.ResourceKey]*unstructured.Unstructured, len(live))
	first := s.deleting == nil
	if first {
		s.deleting = map[kube.ResourceKey]bool{}
	}
	for k, v := range live {
		s.live[k] = v
		if first && v.GetDeletionTimestamp() != nil {
			s.deleting[k] = true
		}
	}
	rec := gsync.Reconcile(targets, live, s.p.DefaultNamespace, s.a.cache)
	diffs, err := s.diff(ctx, rec)
	if err != nil {
		return nil, err
	}
	if s.skipHooks == nil {
		// Like engine.Sync: hooks run only when something is to be applied.
		changes := diffs.Modified
		for i, t := range rec.Target {
			changes = changes || (t != nil && rec.Live[i] == nil)
		}
		skip := !changes
		s.skipHooks = &skip
	}
	policy := map[string]metav1.DeletionPropagation{
		agentcfg.PropagationOrphan:     metav1.DeletePropagationOrphan,
		agentcfg.PropagationBackground: metav1.DeletePropagationBackground,
		agentcfg.PropagationForeground: metav1.DeletePropagationForeground,
	}[s.p.PrunePropagationPolicy]
	dryRun := s.p.DryRunStrategy != agentcfg.DryRunNone
	opts := []gsync.SyncOpt{
		gsync.WithLogr(s.a.engineLog.WithValues("project", s.p.ID)),
		gsync.WithOperationSettings(dryRun, s.p.Prune, false, false),
		gsync.WithPrunePropagationPolicy(&policy),
		gsync.WithServerSideApply(true),
		gsync.WithServerSideApplyManager(FieldManager),
		gsync.WithManifestValidation(false),
		gsync.WithResourceModificationChecker(true, diffs),
		gsync.WithInitialState(state.phase, state.message, state.results, state.startedAt),
		gsync.WithSkipHooks(*s.skipHooks),
	}
	sc, cleanup, err := gsync.NewSyncContext(s.commit, rec, s.a.clients.config, s.a.clients.config, s.kubectl, s.p.DefaultNamespace, opts...)
	if err != nil {
		return nil, fmt.Errorf("sync context: %w", err)
	}
	cleanup() // resourceOps needs no cleanup
	return sc, nil
}

// admit applies inventory_policy: a target whose live object carries
// another mark (or none, under must_match) is refused, and neither applied
// nor pruned. It returns the admitted targets.
func (s *syncRun) admit(live map[kube.ResourceKey]*unstructured.Unstructured) []*unstructured.Unstructured {
	admitted := make([]*unstructured.Unstructured, 0, len(s.targets))
	for _, t := range s.targets {
		k := kube.GetResourceKey(t)
		l := live[k]
		if l == nil || t.GetName() == "" {
			admitted = append(admitted, t)
			continue
		}
		owner := l.GetAnnotations()[AnnotationManagedBy]
		cliInventory := l.GetAnnotations()[AnnotationOwningInventory]
		var why string
		switch {
		case owner == s.mark, s.p.InventoryPolicy == agentcfg.InventoryAdoptAll:
		case owner == "" && cliInventory != "":
			why = fmt.Sprintf("%s belongs to the cli-utils inventory %q (%s, GitLab's agent): inventory_policy %s does not take it over (adopt_all would)",
				describeKey(k.GroupKind(), k.Namespace, k.Name), cliInventory, AnnotationOwningInventory, s.p.InventoryPolicy)
		case owner == "" && s.p.InventoryPolicy == agentcfg.InventoryAdoptIfNoInventory:
		case owner == "":
			why = fmt.Sprintf("%s exists and is not managed by this project: inventory_policy %s does not take over objects without the %s annotation (adopt_if_no_inventory would)",
				describeKey(k.GroupKind(), k.Namespace, k.Name), s.p.InventoryPolicy, AnnotationManagedBy)
		default:
			why = fmt.Sprintf("%s is managed by %q, not this project (%s %q): inventory_policy %s does not take it over (adopt_all would)",
				describeKey(k.GroupKind(), k.Namespace, k.Name), owner, AnnotationManagedBy, s.mark, s.p.InventoryPolicy)
		}
		if why == "" {
			admitted = append(admitted, t)
			continue
		}
		if _, logged := s.refused[k]; !logged {
			s.log.Warn("GitOps: object refused", "reason", why)
		}
		s.refused[k] = why
		delete(live, k)
	}
	return admitted
}

// diff decides which targets differ from their live objects. An object is
// unchanged when its manifest hash matches and either it is still at the
// resourceVersion at which it was last verified, or a diff of the fields
// the manifest sets finds no difference (so objects changed by hand are
// put back). A removed field changes the hash, so it is applied too.
func (s *syncRun) diff(ctx context.Context, rec gsync.ReconciliationResult) (*diff.DiffResultList, error) {
	out := &diff.DiffResultList{}
	if s.nowVerified == nil {
		s.nowVerified = map[kube.ResourceKey]verifiedState{}
	}
	for i, t := range rec.Target {
		l := rec.Live[i]
		if t == nil || l == nil {
			continue // a creation or a prune: no diff needed
		}
		key := kube.GetResourceKey(l)
		hash := t.GetAnnotations()[AnnotationManifestHash]
		modified := l.GetAnnotations()[AnnotationManifestHash] != hash
		if !modified {
			if v, ok := s.verified[key]; ok && v.hash == hash && v.resourceVersion == l.GetResourceVersion() {
				modified = false
			} else {
				d, err := diff.Diff(ctx, t, l, diff.WithLogr(s.a.engineLog))
				if err != nil {
					return nil, fmt.Errorf("diff %s: %w", describe(l), err)
				}
				modified = d.Modified
			}
		}
		if !modified {
			s.nowVerified[key] = verifiedState{resourceVersion: l.GetResourceVersion(), hash: hash}
		}
		keyJSON, err := json.Marshal(map[string]any{
			"apiVersion": l.GetAPIVersion(),
			"kind":       l.GetKind(),
			"metadata":   map[string]any{"name": l.GetName(), "namespace": l.GetNamespace()},
		})
		if err != nil {
			return nil, err
		}
		out.Diffs = append(out.Diffs, diff.DiffResult{Modified: modified, NormalizedLive: keyJSON, PredictedLive: keyJSON})
		out.Modified = out.Modified || modified
	}
	return out, nil
}

// terminate stops a sync that ran out of time: running hooks are deleted
// and hook finalizers removed.
func (s *syncRun) terminate(state opState) {
	ctx, cancel := context.WithTimeout(context.Background(), terminateTimeout)
	defer cancel()
	sc, err := s.newSyncContext(ctx, state)
	if err != nil {
		s.log.Warn("GitOps: cannot clean up the timed out sync", "err", err)
		return
	}
	sc.Terminate(ctx)
}

// result counts what the operation did.
func (s *syncRun) result(state opState) Result {
	res := Result{Commit: s.commit}
	var failures []string
	// done: objects (not hooks) applied or failed. gitops-engine gives
	// cluster-scoped objects the default namespace in its results.
	done := map[kube.ResourceKey]bool{}
	for _, r := range state.results {
		if r.HookType == "" && (r.Status == common.ResultCodeSynced || r.Status == common.ResultCodeSyncFailed) {
			done[r.ResourceKey] = true
		}
		switch r.Status {
		case common.ResultCodeSynced:
			res.Applied++
		case common.ResultCodePruned:
			clusterScoped := r.ResourceKey
			clusterScoped.Namespace = ""
			if !s.deleting[r.ResourceKey] && !(r.ResourceKey.Namespace == s.p.DefaultNamespace && s.deleting[clusterScoped]) {
				res.Pruned++
			}
		case common.ResultCodeSyncFailed:
			failures = append(failures, fmt.Sprintf("%s: %s", describeKey(r.ResourceKey.GroupKind(), r.ResourceKey.Namespace, r.ResourceKey.Name), r.Message))
		}
		if r.HookType != "" && r.HookPhase.Completed() && !r.HookPhase.Successful() && r.Status != common.ResultCodeSyncFailed {
			failures = append(failures, fmt.Sprintf("hook %s: %s", describeKey(r.ResourceKey.GroupKind(), r.ResourceKey.Namespace, r.ResourceKey.Name), r.Message))
		}
	}
	// Unchanged: found equal to their manifests and not applied.
	for _, t := range s.targets {
		k := kube.GetResourceKey(t)
		inDefault := k
		if inDefault.Namespace == "" {
			inDefault.Namespace = s.p.DefaultNamespace
		}
		if _, ok := s.nowVerified[k]; ok && !hook.IsHook(t) && !done[k] && !done[inDefault] {
			res.Unchanged++
		}
	}
	refused := make([]string, 0, len(s.refused))
	for _, why := range s.refused {
		refused = append(refused, why)
	}
	sort.Strings(refused)
	if state.phase != common.OperationSucceeded {
		res.Failed = true
		res.Reason = state.message
		if len(failures) > 0 && !strings.Contains(state.message, failures[0]) {
			sort.Strings(failures)
			res.Reason = joinReasons(res.Reason, strings.Join(failures, "; "))
		}
	}
	if len(refused) > 0 {
		res.Failed = true
		res.Reason = joinReasons(res.Reason, strings.Join(refused, "; "))
	}
	return res
}

func joinReasons(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// waitCache waits (up to cacheCatchUp) until the cluster cache shows every
// object this sync applied at the resourceVersion the API server gave it,
// or a later one.
func (s *syncRun) waitCache(ctx context.Context, changed <-chan struct{}) {
	want := s.applied.snapshot()
	if len(want) == 0 {
		return
	}
	deadline := time.NewTimer(cacheCatchUp)
	defer deadline.Stop()
	for {
		seen := s.a.cache.FindResources("", func(r *cache.Resource) bool {
			w, ok := want[r.ResourceKey()]
			return ok && !olderVersion(r.ResourceVersion, w.GetResourceVersion())
		})
		if len(seen) == len(want) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			s.log.Debug("GitOps: cluster cache lags behind the applied objects", "missing", len(want)-len(seen))
			return
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// olderVersion reports whether resourceVersion have is older than want.
// resourceVersions are opaque, but every API server in use gives etcd
// revisions; anything else counts as caught up only when equal.
func olderVersion(have, want string) bool {
	h, err1 := strconv.ParseUint(have, 10, 64)
	w, err2 := strconv.ParseUint(want, 10, 64)
	if err1 != nil || err2 != nil {
		return have != want
	}
	return h < w
}

// remember records which objects are known to match their manifests, at
// which resourceVersion, for the next sync.
func (s *syncRun) remember(results []common.ResourceSyncResult) {
	v := make(map[kube.ResourceKey]verifiedState, len(s.targets))
	for k, st := range s.nowVerified {
		v[k] = st
	}
	failed := map[kube.ResourceKey]bool{}
	for _, r := range results {
		if r.Status == common.ResultCodeSyncFailed {
			failed[r.ResourceKey] = true
		}
	}
	hashes := make(map[kube.ResourceKey]string, len(s.targets))
	for _, t := range s.targets {
		hashes[kube.GetResourceKey(t)] = t.GetAnnotations()[AnnotationManifestHash]
	}
	for k, o := range s.applied.snapshot() {
		if h, ok := hashes[k]; ok && !failed[k] && o.GetAnnotations()[AnnotationManifestHash] == h {
			v[k] = verifiedState{resourceVersion: o.GetResourceVersion(), hash: h}
		}
	}
	for k := range v {
		if _, ok := hashes[k]; !ok {
			delete(v, k)
		}
	}
	keys := make(map[kube.ResourceKey]struct{}, len(s.targets))
	for _, t := range s.targets {
		if _, refused := s.refused[kube.GetResourceKey(t)]; !refused && !hook.IsHook(t) {
			keys[kube.GetResourceKey(t)] = struct{}{}
		}
	}
	s.a.mu.Lock()
	s.a.targets[s.mark] = keys
	s.a.verified[s.mark] = v
	s.a.mu.Unlock()
}
