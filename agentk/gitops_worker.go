package agentk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/utils/clock"

	"kubetunnel/agentcfg"
	"kubetunnel/api/rpc"
	"kubetunnel/gitops/apply"
	"kubetunnel/tunnel"
)

// manifestSet is every selected file of a project at one commit.
type manifestSet struct {
	commit string
	files  []apply.File
}

// worker follows one manifest project: it receives each new commit's
// files from kas, syncs them, retries a failed sync with backoff,
// re-syncs periodically to undo drift, follows the health of what it
// applied, and reports every result and health change to kas.
type worker struct {
	g       *gitopsManager
	project agentcfg.ManifestProject
	apply   apply.Project
	name    string
	log     *slog.Logger

	// last is the latest report, resent with a new health; owned by run.
	last *rpc.SyncStatus
}

func newWorker(g *gitopsManager, p agentcfg.ManifestProject) *worker {
	return &worker{g: g, project: p, apply: apply.ProjectFromConfig(p), name: p.DisplayName(),
		log: g.logger.With("project", p.DisplayName())}
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
	changed := make(chan struct{}, 1)
	stop := w.g.syncer.OnChange(w.apply, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	defer stop()

	var (
		last     *manifestSet
		attempts int
		// retry fires the next attempt at a failed sync; nil when none.
		retry       <-chan time.Time
		retryTimer  clock.Timer
		healthTimer <-chan time.Time
	)
	stopRetry := func() {
		if retryTimer != nil {
			retryTimer.Stop()
		}
		retry, retryTimer = nil, nil
	}
	defer stopRetry()
	reconcile := w.g.clock.NewTimer(w.g.period)
	defer reconcile.Stop()
	syncNow := func(s manifestSet, why string) {
		stopRetry()
		res := w.sync(ctx, s, why)
		if ctx.Err() != nil {
			return
		}
		var next time.Time
		if res.Failed && res.Failure.Retryable() {
			attempts++
			d := retryDelay(w.g.retryInitial, w.g.retryMax, attempts)
			next = w.g.clock.Now().Add(d)
			retryTimer = w.g.clock.NewTimer(d)
			retry = retryTimer.C()
		} else if !res.Failed {
			attempts = 0
		}
		w.report(ctx, s.commit, res, attempts, next)
		reconcile.Reset(w.g.period)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sets:
			last = &s
			attempts = 0
			syncNow(s, "new commit")
		case <-retry:
			retry, retryTimer = nil, nil
			if last != nil {
				syncNow(*last, "retry")
			}
		case <-reconcile.C():
			if last != nil && retry == nil {
				syncNow(*last, "reconcile")
			} else {
				reconcile.Reset(w.g.period)
			}
		case <-changed:
			if healthTimer == nil {
				healthTimer = w.g.clock.After(w.g.healthDelay)
			}
		case <-healthTimer:
			healthTimer = nil
			w.healthChanged(ctx)
		}
	}
}

// retryDelay is the wait before attempt n+1 (n >= 1): initial doubling up to
// max.
func retryDelay(initial, max time.Duration, n int) time.Duration {
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// sync applies one set and logs the outcome.
func (w *worker) sync(ctx context.Context, s manifestSet, why string) apply.Result {
	start := time.Now()
	res := w.g.syncer.SyncFiles(ctx, w.apply, s.commit, s.files)
	if ctx.Err() != nil {
		return res
	}
	d := time.Since(start)
	w.g.metrics.duration.Observe(d.Seconds())
	log := w.log.With("commit", s.commit, "why", why)
	switch {
	case res.Failure == apply.FailureNoManifests:
		log.Warn("GitOps: no manifests matched; nothing applied or pruned", "err", res.Reason)
	case res.Failed:
		log.Error("GitOps: sync failed", "kind", string(res.Failure), "applied", res.Applied, "pruned", res.Pruned, "err", res.Reason)
	default:
		w.g.setCounts(projectKey(w.project), res)
		level := slog.LevelInfo
		if why == "reconcile" && res.Applied == 0 && res.Pruned == 0 {
			level = slog.LevelDebug
		} else if why == "reconcile" {
			why = "drift corrected"
		}
		// w.log, not log: log carries why already, and here it may be reworded.
		w.log.Log(ctx, level, "GitOps: synced", "commit", s.commit, "why", why, "applied", res.Applied, "pruned", res.Pruned,
			"unchanged", res.Unchanged, "health", res.Health, "pending_prunes", len(res.PendingPrunes), "duration", d.Round(time.Millisecond))
	}
	return res
}

// resultOf is the rpc result of a sync.
func resultOf(res apply.Result) string {
	switch {
	case !res.Failed:
		return resultSynced
	case res.Failure == apply.FailureNoManifests:
		return resultNoManifests
	case res.Failure == apply.FailureStalled:
		return resultStalled
	}
	return resultFailed
}

// report sends kas the outcome of a sync.
func (w *worker) report(ctx context.Context, commit string, res apply.Result, attempts int, next time.Time) {
	st := &rpc.SyncStatus{
		ProjectId: w.project.ID, ProjectName: w.name, DefaultNamespace: w.project.DefaultNamespace,
		CommitId: commit, Result: resultOf(res), Reason: res.Reason,
		Applied: int32(res.Applied), Pruned: int32(res.Pruned), Unchanged: int32(res.Unchanged), Health: res.Health,
		Attempts: int32(attempts),
	}
	if !next.IsZero() {
		st.NextRetryUnixMs = next.UnixMilli()
		w.log.Info("GitOps: retrying", "commit", commit, "attempt", attempts+1, "at", next.UTC().Format(time.RFC3339))
	}
	for _, p := range res.PendingPrunes {
		st.PendingPrunes = append(st.PendingPrunes, &rpc.PendingPrune{Object: p.Object, Finalizers: p.Finalizers, DeletingSinceUnixMs: p.Since.UnixMilli()})
	}
	w.g.metrics.syncs.WithLabelValues(st.Result).Inc()
	w.g.metrics.setProject(w.name, st.Result, len(st.PendingPrunes))
	w.last = st
	w.send(ctx, st)
}

// healthChanged resends the latest report when the project's health has
// changed since.
func (w *worker) healthChanged(ctx context.Context) {
	if w.last == nil {
		return
	}
	h := w.g.syncer.Health(w.apply)
	if h == "" || h == w.last.Health {
		return
	}
	w.log.Info("GitOps: health changed", "commit", w.last.CommitId, "from", w.last.Health, "to", h)
	st := proto.Clone(w.last).(*rpc.SyncStatus)
	st.Health = h
	w.last = st
	w.send(ctx, st)
}

func (w *worker) send(ctx context.Context, st *rpc.SyncStatus) {
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
			w.reportStreamError(ctx, lastCommit, st.Message())
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

// reportStreamError tells kas about a failure that happened before any
// sync. It runs beside run, so it does not touch w.last.
func (w *worker) reportStreamError(ctx context.Context, commit, reason string) {
	w.g.metrics.syncs.WithLabelValues(resultFailed).Inc()
	w.send(ctx, &rpc.SyncStatus{ProjectId: w.project.ID, ProjectName: w.name, DefaultNamespace: w.project.DefaultNamespace,
		CommitId: commit, Result: resultFailed, Reason: reason})
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
				cur.files = append(cur.files, apply.File{Path: m.Object.Source, Data: m.Object.Data})
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
