package apply

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/tracing"
)

// Annotations agentk puts on every object it applies.
const (
	// AnnotationManagedBy marks the objects a manifest project manages:
	// "<agent>/<project id>/<default namespace>". Only objects with the
	// project's mark are pruned, and inventory_policy decides which
	// objects without it a project may take over.
	AnnotationManagedBy = "gitops.kubetunnel.io/managed-by"
	// AnnotationManifestHash is a hash of the manifest last applied, so a
	// changed manifest is applied even when the change is a removed field.
	AnnotationManifestHash = "gitops.kubetunnel.io/manifest-hash"
	// AnnotationOwningInventory marks objects applied by GitLab's agent
	// (cli-utils inventories). Such an object belongs to another
	// inventory: only inventory_policy adopt_all takes it over, as in
	// cli-utils.
	AnnotationOwningInventory = "config.k8s.io/owning-inventory"
)

// FieldManager is the server-side apply field manager of agentk's applies.
const FieldManager = "agentk"

// Applier applies manifest projects to one cluster with gitops-engine. One
// Applier serves every manifest project of an agent: they share one cluster
// cache (one watch per kind) and one set of API clients. Sync may be
// called concurrently for different projects; calls for the same project
// run one at a time.
type Applier struct {
	agent     string
	logger    *slog.Logger
	engineLog logr.Logger
	clients   *clients
	cache     cache.ClusterCache
	// invalidated guards against a gitops-engine panic: see
	// kubectl.GetAPIResources. Set before every cache.Invalidate.
	invalidated atomic.Bool

	// cacheMu is held for reading by every Sync while it uses the cache,
	// and for writing to change what the cache watches or to stop it.
	cacheMu sync.RWMutex
	// stopped is set once Run returns; guarded by cacheMu.
	stopped bool
	// projects are the projects whose kinds the cache watches, by mark;
	// guarded by cacheMu.
	projects map[string]Project

	mu sync.Mutex // guards locks, verified, targets and impersonating
	// locks serializes the syncs of one project (by mark).
	locks map[string]*sync.Mutex
	// verified holds, per project mark, the resourceVersion at which each
	// object was last known to match its manifest (applied or diffed). An
	// object still at that version is unchanged without a diff.
	verified map[string]map[kube.ResourceKey]verifiedState
	// targets holds, per project mark, the objects of its last sync (not
	// a dry run), for Health.
	targets map[string]map[kube.ResourceKey]struct{}
	// impersonating holds the clients of each service_account in use.
	impersonating map[string]*clients

	// clock tells whether a pending prune has passed prune_timeout, so a
	// test can move past it instead of sleeping.
	clock clock.PassiveClock
}

// verifiedState is an object known to match the manifest with this hash
// at this resourceVersion.
type verifiedState struct {
	resourceVersion, hash string
}

// New makes the Applier of agent agentName for the cluster cfg points to.
// QPS and Burst left at zero in cfg become DefaultQPS and DefaultBurst.
// Nothing is contacted until Run or the first Sync.
func New(cfg *rest.Config, agentName string, logger *slog.Logger) (*Applier, error) {
	if agentName == "" || strings.Contains(agentName, "/") {
		return nil, fmt.Errorf("agent name %q: must be set and contain no '/'", agentName)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := newClients(cfg, logger)
	if err != nil {
		return nil, err
	}
	a := &Applier{
		agent:     agentName,
		logger:    logger,
		engineLog: engineLogger(logger),
		clients:   c,
		projects:  map[string]Project{},
		locks:     map[string]*sync.Mutex{},
		verified:  map[string]map[kube.ResourceKey]verifiedState{},
		targets:   map[string]map[kube.ResourceKey]struct{}{},

		impersonating: map[string]*clients{},
		clock:         clock.RealClock{},
	}
	k := &kubectl{KubectlCmd: &kube.KubectlCmd{Log: a.engineLog, Tracer: tracing.NopTracer{}}, c: c, manager: FieldManager, invalidated: &a.invalidated}
	a.cache = cache.NewClusterCache(c.config,
		cache.SetKubectl(k),
		cache.SetLogr(a.engineLog),
		cache.SetSettings(cache.Settings{ResourcesFilter: cacheFilter{}}),
		cache.SetPopulateResourceInfoHandler(populateInfo),
	)
	return a, nil
}

// resourceInfo is what the cache keeps about an object besides its key:
// the project mark, for objects that have one (their manifests are cached
// too, so they can be diffed and pruned).
type resourceInfo struct {
	mark string
}

func populateInfo(un *unstructured.Unstructured, _ bool) (any, bool) {
	m := un.GetAnnotations()[AnnotationManagedBy]
	if m == "" {
		return nil, false
	}
	return &resourceInfo{mark: m}, true
}

func markOf(r *cache.Resource) string {
	if info, ok := r.Info.(*resourceInfo); ok {
		return info.mark
	}
	return ""
}

// Run starts the cluster cache (lists and watches every kind the projects
// manage) and keeps it until ctx is done. Then it waits for running syncs
// (cancel them first), stops the watches and returns. A cache that fails
// to start is retried by the next Sync.
func (a *Applier) Run(ctx context.Context) error {
	a.cacheMu.RLock()
	err := a.cache.EnsureSynced()
	a.cacheMu.RUnlock()
	if err != nil {
		a.logger.Warn("GitOps: cluster cache not ready; the next sync retries", "err", err)
	}
	<-ctx.Done()
	a.cacheMu.Lock()
	a.stopped = true
	a.invalidated.Store(true)
	a.cache.Invalidate()
	a.cacheMu.Unlock()
	a.clients.close()
	return nil
}

// lockProject serializes the syncs of one project.
func (a *Applier) lockProject(m string) func() {
	a.mu.Lock()
	l, ok := a.locks[m]
	if !ok {
		l = &sync.Mutex{}
		a.locks[m] = l
	}
	a.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// watch makes the cache watch the kinds p manages, re-listing the cluster
// when that changes what it watches.
func (a *Applier) watch(m string, p Project) error {
	a.cacheMu.RLock()
	old, known := a.projects[m]
	stopped := a.stopped
	a.cacheMu.RUnlock()
	if stopped {
		return ErrStopped
	}
	if known && sameFilters(old, p) {
		return nil
	}
	a.cacheMu.Lock()
	defer a.cacheMu.Unlock()
	if a.stopped {
		return ErrStopped
	}
	before := newCacheFilter(a.projects)
	a.projects[m] = p
	after := newCacheFilter(a.projects)
	if !before.equal(after) {
		a.logger.Info("GitOps: watched kinds changed; re-listing the cluster", "project", p.ID)
		a.invalidated.Store(true)
		a.cache.Invalidate(cache.SetSettings(cache.Settings{ResourcesFilter: after}))
	}
	return nil
}

func sameFilters(a, b Project) bool {
	eq := func(x, y []Filter) bool {
		return slices.EqualFunc(x, y, func(f, g Filter) bool {
			return slices.Equal(f.APIGroups, g.APIGroups) && slices.Equal(f.Kinds, g.Kinds)
		})
	}
	return eq(a.ResourceInclusions, b.ResourceInclusions) && eq(a.ResourceExclusions, b.ResourceExclusions)
}

// cacheFilter excludes from the cluster cache the kinds no project
// manages. With no projects, or one without filters, it watches every
// kind. CustomResourceDefinitions are always watched: the cache learns
// of new kinds from them.
type cacheFilter struct {
	projects []Project
}

var _ kube.ResourceFilter = cacheFilter{}

func newCacheFilter(projects map[string]Project) cacheFilter {
	var f cacheFilter
	for _, p := range projects {
		if len(p.ResourceInclusions) == 0 && len(p.ResourceExclusions) == 0 {
			return cacheFilter{} // watches everything anyway
		}
		f.projects = append(f.projects, p)
	}
	return f
}

func (f cacheFilter) equal(g cacheFilter) bool {
	if len(f.projects) != len(g.projects) {
		return false
	}
	used := make([]bool, len(g.projects))
outer:
	for _, p := range f.projects {
		for i, q := range g.projects {
			if !used[i] && sameFilters(p, q) {
				used[i] = true
				continue outer
			}
		}
		return false
	}
	return true
}

func (f cacheFilter) IsExcludedResource(group, kind, _ string) bool {
	if len(f.projects) == 0 || (group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition") {
		return false
	}
	for _, p := range f.projects {
		if p.manages(group, kind) {
			return false
		}
	}
	return true
}

func (f cacheFilter) GetLabelSelector(_, _, _ string) string { return "" }

// writer returns the clients that send project p's writes: the agent's
// own, or ones impersonating p's service account.
func (a *Applier) writer(p Project) (*clients, error) {
	if p.ServiceAccount == "" {
		return a.clients, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.impersonating[p.ServiceAccount]; ok {
		return c, nil
	}
	ns, name, _ := strings.Cut(p.ServiceAccount, "/")
	c, err := a.clients.as(ns, name)
	if err != nil {
		return nil, err
	}
	a.impersonating[p.ServiceAccount] = c
	return c, nil
}
