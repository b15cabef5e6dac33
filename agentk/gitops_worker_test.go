package agentk

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	clocktesting "k8s.io/utils/clock/testing"

	"kubetunnel/agentcfg"
	"kubetunnel/api/rpc"
	"kubetunnel/gitops/apply"
	"kubetunnel/internal/testutil"
)

// fakeGitOps serves the sets given to it, one stream, and records reports.
type fakeGitOps struct {
	sets    chan []*rpc.ObjectsToSynchronizeResponse
	reports chan *rpc.SyncStatus
}

func (f *fakeGitOps) GetObjectsToSynchronize(ctx context.Context, _ *rpc.ObjectsToSynchronizeRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[rpc.ObjectsToSynchronizeResponse], error) {
	return &fakeStream{ctx: ctx, sets: f.sets}, nil
}

func (f *fakeGitOps) ReportSyncStatus(ctx context.Context, st *rpc.SyncStatus, _ ...grpc.CallOption) (*rpc.SyncStatusAck, error) {
	select {
	case f.reports <- st:
	case <-ctx.Done():
	}
	return &rpc.SyncStatusAck{}, nil
}

type fakeStream struct {
	grpc.ClientStream
	ctx     context.Context
	sets    chan []*rpc.ObjectsToSynchronizeResponse
	pending []*rpc.ObjectsToSynchronizeResponse
}

func (s *fakeStream) Recv() (*rpc.ObjectsToSynchronizeResponse, error) {
	for len(s.pending) == 0 {
		select {
		case set := <-s.sets:
			s.pending = set
		case <-s.ctx.Done():
			return nil, io.EOF
		}
	}
	m := s.pending[0]
	s.pending = s.pending[1:]
	return m, nil
}

func set(commit string) []*rpc.ObjectsToSynchronizeResponse {
	return []*rpc.ObjectsToSynchronizeResponse{
		{Message: &rpc.ObjectsToSynchronizeResponse_Header_{Header: &rpc.ObjectsToSynchronizeResponse_Header{CommitId: commit}}},
		{Message: &rpc.ObjectsToSynchronizeResponse_Object_{Object: &rpc.ObjectsToSynchronizeResponse_Object{Source: "/a.yaml", Data: []byte("x")}}},
		{Message: &rpc.ObjectsToSynchronizeResponse_Trailer_{Trailer: &rpc.ObjectsToSynchronizeResponse_Trailer{}}},
	}
}

// fakeSyncer returns scripted results and a settable health.
type fakeSyncer struct {
	mu       sync.Mutex // guards the fields below
	results  []apply.Result
	calls    []string
	health   string
	onChange func()
}

func (s *fakeSyncer) SyncFiles(_ context.Context, _ apply.Project, commit string, _ []apply.File) apply.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, commit)
	r := apply.Result{Commit: commit, Health: "Healthy"}
	if len(s.results) > 0 {
		r, s.results = s.results[0], s.results[1:]
	}
	return r
}

func (s *fakeSyncer) Health(apply.Project) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health
}

func (s *fakeSyncer) OnChange(_ apply.Project, fn func()) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onChange = fn
	return func() {}
}

func (s *fakeSyncer) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// The worker retries a retryable failure with doubling delays up to the
// cap, resets on success, does not retry a stalled commit, and reports a
// health change without a sync. The worker's timers run on a fake clock:
// each attempt happens exactly when its delay has passed, not before.
func TestWorkerRetryAndHealth(t *testing.T) {
	client := &fakeGitOps{sets: make(chan []*rpc.ObjectsToSynchronizeResponse), reports: make(chan *rpc.SyncStatus, 16)}
	retryable := apply.Result{Failed: true, Failure: apply.FailureRetryable, Reason: "connection refused"}
	syncer := &fakeSyncer{results: []apply.Result{retryable, retryable, retryable, {Health: "Progressing"}}}
	logger, _ := testutil.NewLogger(t) // fails the test if a record carries a key twice
	g := newGitopsManager(client, nil, logger, newGitopsMetrics(prometheus.NewRegistry()), time.Hour)
	g.syncer = syncer
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g.clock = clk
	g.retryInitial, g.retryMax, g.healthDelay = 40*time.Millisecond, 100*time.Millisecond, 10*time.Millisecond
	p := agentcfg.ManifestProject{ID: "group/app", DefaultNamespace: "apps", Name: "app"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		newWorker(g, p).run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	next := func() *rpc.SyncStatus {
		t.Helper()
		select {
		case st := <-client.reports:
			return st
		case <-time.After(10 * time.Second):
			t.Fatal("no report")
			return nil
		}
	}

	client.sets <- set("c1")
	for i, delay := range []time.Duration{40 * time.Millisecond, 80 * time.Millisecond, 100 * time.Millisecond} {
		st := next()
		if st.Result != "failed" || st.Attempts != int32(i+1) || st.ProjectName != "app" || st.DefaultNamespace != "apps" {
			t.Fatalf("report %d: %+v", i, st)
		}
		if at, want := time.UnixMilli(st.NextRetryUnixMs), clk.Now().Add(delay); !at.Equal(want) {
			t.Errorf("attempt %d: next retry at %s, want %s (%s later)", i+1, at.Format(time.StampMilli), want.Format(time.StampMilli), delay)
		}
		// Nothing happens a millisecond early; the report of the next
		// attempt (its own next retry counted from the clock) shows it ran
		// exactly when the delay had passed.
		clk.Step(delay - time.Millisecond)
		clk.Step(time.Millisecond)
	}
	st := next()
	if st.Result != "synced" || st.Attempts != 0 || st.NextRetryUnixMs != 0 || st.Health != "Progressing" || st.CommitId != "c1" {
		t.Fatalf("after the retries: %+v", st)
	}
	if n := syncer.callCount(); n != 4 {
		t.Errorf("%d syncs, want 4 (three failed attempts and the success)", n)
	}

	// Health changes between syncs: one report with the new health after
	// healthDelay, no sync.
	calls := syncer.callCount()
	syncer.mu.Lock()
	syncer.health = "Healthy"
	fn := syncer.onChange
	syncer.mu.Unlock()
	fn()
	fn()
	// The worker has armed its health timer when the clock has a waiter
	// besides the reconcile timer.
	testutil.Eventually(t, 10*time.Second, "the health timer", func() bool { return clk.Waiters() == 2 })
	clk.Step(10 * time.Millisecond)
	st = next()
	if st.Result != "synced" || st.Health != "Healthy" || st.CommitId != "c1" || syncer.callCount() != calls {
		t.Errorf("health report: %+v (syncs %d, were %d)", st, syncer.callCount(), calls)
	}

	// A stalled commit is not retried: after its report, the only timer
	// left is the periodic reconcile.
	syncer.mu.Lock()
	syncer.results = []apply.Result{{Failed: true, Failure: apply.FailureStalled, Reason: "pre-check: …"}}
	syncer.mu.Unlock()
	client.sets <- set("c2")
	st = next()
	if st.Result != "stalled" || st.NextRetryUnixMs != 0 || st.CommitId != "c2" {
		t.Errorf("stalled: %+v", st)
	}
	if n := clk.Waiters(); n != 1 {
		t.Errorf("%d timers after a stalled sync, want 1 (the reconcile)", n)
	}
	calls = syncer.callCount()
	clk.Step(time.Minute)
	// The period (an hour) re-syncs the stalled commit like any other:
	// that is how drift is undone, and it is the only way it runs again.
	clk.Step(time.Hour)
	st = next()
	if syncer.callCount() != calls+1 || st.CommitId != "c2" {
		t.Errorf("after an hour: %d syncs (were %d), report %+v; want one reconcile", syncer.callCount(), calls, st)
	}
}

func TestRetryDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 7: 5 * time.Minute, 100: 5 * time.Minute} {
		if got := retryDelay(DefaultRetryInitial, DefaultRetryMax, n); got != want {
			t.Errorf("retryDelay(%d) = %s, want %s", n, got, want)
		}
	}
}
