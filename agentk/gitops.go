package agentk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"kubetunnel/agentcfg"
	"kubetunnel/api/rpc"
	"kubetunnel/tunnel"
)

// ManifestFile is one file of a manifest project at a commit.
type ManifestFile struct {
	Path string
	Data []byte
}

// SyncResult is what applying one set of manifests did.
type SyncResult struct {
	Applied, Pruned, Unchanged int
	Health                     string
	// Err is a failed sync; nothing was applied or pruned when it is a
	// parse error.
	Err error
}

// Syncer applies a manifest project's files at a commit to the cluster.
// A nil files slice with the project's prune on removes everything the
// project manages (the project was removed from the config).
type Syncer interface {
	Sync(ctx context.Context, p agentcfg.ManifestProject, commit string, files []ManifestFile) SyncResult
}

// SyncerFactory makes the Syncer once the agent's name is known (kas
// sends it with the config). run, when not nil, is the Syncer's
// long-lived part (a cluster cache), run until the agent stops.
type SyncerFactory func(agentName string) (s Syncer, run func(ctx context.Context) error, err error)

// DefaultReconcilePeriod is how often a project is re-synced without a new
// commit, which puts back objects changed by hand (drift).
const DefaultReconcilePeriod = 5 * time.Minute

// gitopsMetrics are agentk's GitOps metrics.
type gitopsMetrics struct {
	syncs    *prometheus.CounterVec // result
	duration prometheus.Histogram
	objects  *prometheus.GaugeVec // state
}

func newGitopsMetrics(reg prometheus.Registerer) *gitopsMetrics {
	m := &gitopsMetrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentk_gitops_sync_total",
			Help: "GitOps syncs by result (synced, failed).",
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
	}
	for _, r := range []string{"synced", "failed"} {
		m.syncs.WithLabelValues(r)
	}
	reg.MustRegister(m.syncs, m.duration, m.objects)
	return m
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
			g.logger.Info("GitOps: stopping worker", "project", w.project.ID, "namespace", w.project.DefaultNamespace)
			stop(w)
			delete(running, key)
			if !keep {
				g.removed(ctx, w.project)
			}
		}
		for key, p := range want {
			if _, ok := running[key]; ok {
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			w := &runningWorker{project: p, cancel: cancel, done: make(chan struct{})}
			running[key] = w
			g.logger.Info("GitOps: starting worker", "project", p.ID, "namespace", p.DefaultNamespace)
			go func() {
				defer close(w.done)
				(&worker{g: g, project: p, log: g.logger.With("project", p.ID)}).run(wctx)
			}()
		}
	}
}

// removed prunes what a project that left the config managed, if its
// prune setting says so.
func (g *gitopsManager) removed(ctx context.Context, p agentcfg.ManifestProject) {
	if p.Prune == nil || !*p.Prune {
		g.logger.Info("GitOps: project removed from the config; prune is off, its objects stay", "project", p.ID)
		return
	}
	res := g.syncer.Sync(ctx, p, "", nil)
	if res.Err != nil {
		g.logger.Error("GitOps: pruning a removed project failed", "project", p.ID, "err", res.Err)
		return
	}
	g.logger.Info("GitOps: project removed from the config; its objects were pruned", "project", p.ID, "pruned", res.Pruned)
	g.setCounts(projectKey(p), SyncResult{})
}

func (g *gitopsManager) setCounts(key string, r SyncResult) {
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

// manifestSet is every selected file of a project at one commit.
type manifestSet struct {
	commit string
	files  []ManifestFile
}

// worker follows one manifest project: it receives each new commit's
// files from kas, syncs them, re-syncs periodically to undo drift, and
// reports every result to kas.
type worker struct {
	g       *gitopsManager
	project agentcfg.ManifestProject
	log     *slog.Logger
}

func (w *worker) run(ctx context.Context) {
	sets := make(chan manifestSet)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.receive(ctx, sets)
	}()
	var last *manifestSet
	timer := time.NewTimer(w.g.period)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sets:
			last = &s
			w.sync(ctx, s, "new commit")
		case <-timer.C:
			if last != nil {
				w.sync(ctx, *last, "reconcile")
			}
		}
		timer.Reset(w.g.period)
	}
}

func (w *worker) sync(ctx context.Context, s manifestSet, why string) {
	start := time.Now()
	res := w.g.syncer.Sync(ctx, w.project, s.commit, s.files)
	if ctx.Err() != nil {
		return
	}
	d := time.Since(start)
	w.g.metrics.duration.Observe(d.Seconds())
	st := &rpc.SyncStatus{ProjectId: w.project.ID, CommitId: s.commit, Result: "synced",
		Applied: int32(res.Applied), Pruned: int32(res.Pruned), Unchanged: int32(res.Unchanged), Health: res.Health}
	if res.Err != nil {
		st.Result, st.Reason = "failed", res.Err.Error()
		w.log.Error("GitOps: sync failed", "commit", s.commit, "why", why, "applied", res.Applied, "pruned", res.Pruned, "err", res.Err)
	} else {
		w.g.setCounts(projectKey(w.project), res)
		log := w.log.Info
		if why == "reconcile" && res.Applied == 0 && res.Pruned == 0 {
			log = w.log.Debug
		} else if why == "reconcile" {
			why = "drift corrected"
		}
		log("GitOps: synced", "commit", s.commit, "why", why, "applied", res.Applied, "pruned", res.Pruned,
			"unchanged", res.Unchanged, "health", res.Health, "duration", d.Round(time.Millisecond))
	}
	w.g.metrics.syncs.WithLabelValues(st.Result).Inc()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.g.client.ReportSyncStatus(rctx, st); err != nil {
		w.log.Debug("GitOps: status not reported to kas", "err", err)
	}
}

// receive streams the project's manifests from kas, resuming after the
// last complete set it received, and passes each complete set on.
func (w *worker) receive(ctx context.Context, sets chan<- manifestSet) {
	bo := tunnel.Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Reset: time.Minute}
	lastCommit := ""
	for ctx.Err() == nil {
		start := time.Now()
		commit, err := w.stream(ctx, lastCommit, sets)
		if commit != "" {
			lastCommit = commit
		}
		if ctx.Err() != nil {
			return
		}
		if st, ok := status.FromError(err); ok && err != nil {
			w.log.Warn("GitOps: cannot get manifests from kas", "err", st.Message())
			w.report(ctx, lastCommit, st.Message())
		}
		bo.Connected(time.Since(start))
		t := time.NewTimer(bo.Next())
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// report tells kas about a failure that happened before any sync.
func (w *worker) report(ctx context.Context, commit, reason string) {
	w.g.metrics.syncs.WithLabelValues("failed").Inc()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, _ = w.g.client.ReportSyncStatus(rctx, &rpc.SyncStatus{ProjectId: w.project.ID, CommitId: commit, Result: "failed", Reason: reason})
}

func (w *worker) stream(ctx context.Context, since string, sets chan<- manifestSet) (string, error) {
	globs := make([]string, 0, len(w.project.Paths))
	for _, p := range w.project.Paths {
		globs = append(globs, p.Glob)
	}
	req := &rpc.ObjectsToSynchronizeRequest{
		ProjectId: w.project.ID,
		Ref:       rpc.EncodeRef(w.project.Ref.Branch, w.project.Ref.Tag, w.project.Ref.Commit),
		Globs:     globs,
		CommitId:  since,
	}
	stream, err := w.g.client.GetObjectsToSynchronize(ctx, req, grpc.WaitForReady(true))
	if err != nil {
		return "", err
	}
	var cur *manifestSet
	received := ""
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return received, nil
		}
		if err != nil {
			return received, err
		}
		switch m := msg.Message.(type) {
		case *rpc.ObjectsToSynchronizeResponse_Header_:
			cur = &manifestSet{commit: m.Header.CommitId}
		case *rpc.ObjectsToSynchronizeResponse_Object_:
			if cur == nil {
				return received, fmt.Errorf("kas sent an object before a header")
			}
			// A large file arrives in several messages with the same source.
			if n := len(cur.files); n > 0 && cur.files[n-1].Path == m.Object.Source {
				cur.files[n-1].Data = append(cur.files[n-1].Data, m.Object.Data...)
			} else {
				cur.files = append(cur.files, ManifestFile{Path: m.Object.Source, Data: m.Object.Data})
			}
		case *rpc.ObjectsToSynchronizeResponse_Trailer_:
			if cur == nil {
				return received, fmt.Errorf("kas sent a trailer before a header")
			}
			select {
			case sets <- *cur:
			case <-ctx.Done():
				return received, ctx.Err()
			}
			received = cur.commit
			cur = nil
		}
	}
}
