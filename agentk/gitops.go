package agentk

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"kubetunnel/agentcfg"
	"kubetunnel/api/rpc"
	"kubetunnel/gitops/apply"
)

// Syncer applies a manifest project's files at a commit to the cluster
// and follows the health of what it applied; *apply.Applier is one.
type Syncer interface {
	// SyncFiles syncs; files == nil with AllowEmpty and Prune removes
	// everything the project manages (it was removed from the config).
	SyncFiles(ctx context.Context, p apply.Project, commit string, files []apply.File) apply.Result
	// Health is the project's current health ("" before a sync).
	Health(p apply.Project) string
	// OnChange calls fn (which must not block) when an object of the
	// project changes; call stop to end it.
	OnChange(p apply.Project, fn func()) (stop func())
}

// SyncerFactory makes the Syncer once the agent's name is known (kas
// sends it with the config). run, when not nil, is the Syncer's
// long-lived part (a cluster cache), run until the agent stops.
type SyncerFactory func(agentName string) (s Syncer, run func(ctx context.Context) error, err error)

// DefaultReconcilePeriod is how often a project is re-synced without a new
// commit, which puts back objects changed by hand (drift).
const DefaultReconcilePeriod = 5 * time.Minute

// A failed sync is retried after DefaultRetryInitial, doubling up to
// DefaultRetryMax; a success or a new commit starts again from the
// beginning.
const (
	DefaultRetryInitial = 5 * time.Second
	DefaultRetryMax     = 5 * time.Minute
)

// Sync results, as reported to kas (rpc.SyncStatus.result) and counted
// in agentk_gitops_sync_total.
const (
	resultSynced      = "synced"
	resultFailed      = "failed"
	resultStalled     = "stalled"
	resultNoManifests = "no_manifests_matched"
)

var syncResults = []string{resultSynced, resultFailed, resultStalled, resultNoManifests}

// gitopsMetrics are agentk's GitOps metrics.
type gitopsMetrics struct {
	syncs    *prometheus.CounterVec // result
	duration prometheus.Histogram
	objects  *prometheus.GaugeVec // state
	// project is 1 for the latest result of each project, 0 for the
	// others; pending counts each project's pending prunes. Projects come
	// from the config, so labels stay bounded; a project removed from the
	// config is deleted from both.
	project *prometheus.GaugeVec // project, result
	pending *prometheus.GaugeVec // project
}

func newGitopsMetrics(reg prometheus.Registerer) *gitopsMetrics {
	m := &gitopsMetrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentk_gitops_sync_total",
			Help: "GitOps syncs by result (synced, failed, stalled, no_manifests_matched).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agentk_gitops_sync_duration_seconds",
			Help:    "Time to sync one manifest project.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentk_gitops_objects",
			Help: "Objects of the last sync of every project, by state (applied, pruned, unchanged).",
		}, []string{"state"}),
		project: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentk_gitops_project_result",
			Help: "1 for the result (synced, failed, stalled, no_manifests_matched) of the latest sync of each manifest project (by its name), 0 for the others.",
		}, []string{"project", "result"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentk_gitops_pending_prunes",
			Help: "Objects a manifest project pruned that are still being deleted (finalizers, foreground deletion).",
		}, []string{"project"}),
	}
	for _, r := range syncResults {
		m.syncs.WithLabelValues(r)
	}
	reg.MustRegister(m.syncs, m.duration, m.objects, m.project, m.pending)
	return m
}

func (m *gitopsMetrics) setProject(name, result string, pending int) {
	for _, r := range syncResults {
		v := 0.0
		if r == result {
			v = 1
		}
		m.project.WithLabelValues(name, r).Set(v)
	}
	m.pending.WithLabelValues(name).Set(float64(pending))
}

func (m *gitopsMetrics) forgetProject(name string) {
	m.project.DeletePartialMatch(prometheus.Labels{"project": name})
	m.pending.DeleteLabelValues(name)
}

// gitopsManager runs one worker per manifest project of the current
// config. A new config stops, waits for and restarts only the workers
// whose project changed.
type gitopsManager struct {
	client    rpc.GitOpsClient
	newSyncer SyncerFactory
	syncer    Syncer
	logger    *slog.Logger
	metrics   *gitopsMetrics
	period    time.Duration
	// retry bounds the backoff between attempts at a failed sync; tests
	// shorten it. healthDelay gathers the object changes of a moment
	// into one health report.
	retryInitial, retryMax time.Duration
	healthDelay            time.Duration
	// clock runs the workers' retry, reconcile and health timers, so a
	// test can step through a backoff instead of sleeping through it.
	clock clock.Clock

	mu        sync.Mutex // guards newest and agentName
	newest    *agentcfg.Config
	agentName string
	kick      chan struct{}

	objMu  sync.Mutex // guards counts
	counts map[string][3]int
}

func newGitopsManager(client rpc.GitOpsClient, newSyncer SyncerFactory, logger *slog.Logger, m *gitopsMetrics, period time.Duration) *gitopsManager {
	if period <= 0 {
		period = DefaultReconcilePeriod
	}
	return &gitopsManager{client: client, newSyncer: newSyncer, logger: logger, metrics: m, period: period,
		retryInitial: DefaultRetryInitial, retryMax: DefaultRetryMax, healthDelay: time.Second, clock: clock.RealClock{},
		kick: make(chan struct{}, 1), counts: map[string][3]int{}}
}

// update hands the manager a new config; only the newest is kept.
func (g *gitopsManager) update(agentName string, cfg *agentcfg.Config) {
	g.mu.Lock()
	g.newest, g.agentName = cfg, agentName
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

type runningWorker struct {
	project agentcfg.ManifestProject
	cancel  context.CancelFunc
	done    chan struct{}
}

func projectKey(p agentcfg.ManifestProject) string { return p.ID + "\x00" + p.DefaultNamespace }

func (g *gitopsManager) Run(ctx context.Context) error {
	running := map[string]*runningWorker{}
	stop := func(w *runningWorker) {
		w.cancel()
		<-w.done
	}
	var bg sync.WaitGroup
	defer bg.Wait()
	defer func() {
		for _, w := range running {
			stop(w)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-g.kick:
		}
		g.mu.Lock()
		cfg, name := g.newest, g.agentName
		g.mu.Unlock()
		if len(cfg.GitOps.ManifestProjects) == 0 && len(running) == 0 {
			continue
		}
		if g.syncer == nil {
			s, run, err := g.newSyncer(name)
			if err != nil {
				g.logger.Error("GitOps: cannot start the applier; manifests are not applied", "err", err)
				continue
			}
			g.syncer = s
			if run != nil {
				bg.Add(1)
				go func() {
					defer bg.Done()
					if err := run(ctx); err != nil && ctx.Err() == nil {
						g.logger.Error("GitOps: the applier stopped", "err", err)
					}
				}()
			}
		}
		want := map[string]agentcfg.ManifestProject{}
		for _, p := range cfg.GitOps.ManifestProjects {
			want[projectKey(p)] = p
		}
		for key, w := range running {
			p, keep := want[key]
			if keep && reflect.DeepEqual(p, w.project) {
				continue
			}
			g.logger.Info("GitOps: stopping worker", "project", w.project.DisplayName())
			stop(w)
			delete(running, key)
			if !keep {
				g.removed(ctx, w.project)
				g.metrics.forgetProject(w.project.DisplayName())
			}
		}
		for key, p := range want {
			if _, ok := running[key]; ok {
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			w := &runningWorker{project: p, cancel: cancel, done: make(chan struct{})}
			running[key] = w
			g.logger.Info("GitOps: starting worker", "project", p.DisplayName())
			go func() {
				defer close(w.done)
				newWorker(g, p).run(wctx)
			}()
		}
	}
}

// removed prunes what a project that left the config managed, if its
// prune setting says so.
func (g *gitopsManager) removed(ctx context.Context, p agentcfg.ManifestProject) {
	log := g.logger.With("project", p.DisplayName())
	if p.Prune == nil || !*p.Prune {
		log.Info("GitOps: project removed from the config; prune is off, its objects stay")
		return
	}
	ap := apply.ProjectFromConfig(p)
	ap.AllowEmpty = true // removing the project is the explicit opt-in
	res := g.syncer.SyncFiles(ctx, ap, "", nil)
	if res.Failed {
		log.Error("GitOps: pruning a removed project failed", "err", res.Reason)
		return
	}
	log.Info("GitOps: project removed from the config; its objects were pruned", "pruned", res.Pruned)
	g.setCounts(projectKey(p), apply.Result{})
}

func (g *gitopsManager) setCounts(key string, r apply.Result) {
	g.objMu.Lock()
	defer g.objMu.Unlock()
	g.counts[key] = [3]int{r.Applied, r.Pruned, r.Unchanged}
	var sum [3]int
	for _, c := range g.counts {
		for i := range sum {
			sum[i] += c[i]
		}
	}
	g.metrics.objects.WithLabelValues("applied").Set(float64(sum[0]))
	g.metrics.objects.WithLabelValues("pruned").Set(float64(sum[1]))
	g.metrics.objects.WithLabelValues("unchanged").Set(float64(sum[2]))
}
