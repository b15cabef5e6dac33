package agentk

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"kubetunnel/agentcfg"
	"kubetunnel/api/rpc"
	"kubetunnel/gitops/apply"
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
// health change without a sync.
func TestWorkerRetryAndHealth(t *testing.T) {
	client := &fakeGitOps{sets: make(chan []*rpc.ObjectsToSynchronizeResponse), reports: make(chan *rpc.SyncStatus, 16)}
	retryable := apply.Result{Failed: true, Failure: apply.FailureRetryable, Reason: "connection refused"}
	syncer := &fakeSyncer{results: []apply.Result{retryable, retryable, retryable, {Health: "Progressing"}}}
	g := newGitopsManager(client, nil, slog.New(slog.DiscardHandler), newGitopsMetrics(prometheus.NewRegistry()), time.Hour)
	g.syncer = syncer
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
		case <-time.After(5 * time.Second):
			t.Fatal("no report")
			return nil
		}
	}

	client.sets <- set("c1")
	var last time.Time
	for i, wantDelay := range []time.Duration{40 * time.Millisecond, 80 * time.Millisecond, 100 * time.Millisecond} {
		st := next()
		if st.Result != "failed" || st.Attempts != int32(i+1) || st.ProjectName != "app" || st.DefaultNamespace != "apps" {
			t.Fatalf("report %d: %+v", i, st)
		}
		at := time.UnixMilli(st.NextRetryUnixMs)
		if d := time.Until(at); d > wantDelay || d < wantDelay/2 {
			t.Errorf("attempt %d: next retry in %s, want about %s", i+1, d, wantDelay)
		}
		if !last.IsZero() && time.Since(last) < 30*time.Millisecond {
			t.Errorf("attempt %d came %s after the previous one", i+1, time.Since(last))
		}
		last = time.Now()
	}
	st := next()
	if st.Result != "synced" || st.Attempts != 0 || st.NextRetryUnixMs != 0 || st.Health != "Progressing" || st.CommitId != "c1" {
		t.Fatalf("after the retries: %+v", st)
	}

	// Health changes between syncs: a report with the new health, no sync.
	calls := syncer.callCount()
	syncer.mu.Lock()
	syncer.health = "Healthy"
	fn := syncer.onChange
	syncer.mu.Unlock()
	fn()
	fn()
	st = next()
	if st.Result != "synced" || st.Health != "Healthy" || st.CommitId != "c1" || syncer.callCount() != calls {
		t.Errorf("health report: %+v (syncs %d, were %d)", st, syncer.callCount(), calls)
	}

	// A stalled commit is not retried.
	syncer.mu.Lock()
	syncer.results = []apply.Result{{Failed: true, Failure: apply.FailureStalled, Reason: "pre-check: …"}}
	syncer.mu.Unlock()
	client.sets <- set("c2")
	st = next()
	if st.Result != "stalled" || st.NextRetryUnixMs != 0 || st.CommitId != "c2" {
		t.Errorf("stalled: %+v", st)
	}
	calls = syncer.callCount()
	time.Sleep(300 * time.Millisecond)
	if syncer.callCount() != calls {
		t.Errorf("a stalled commit was retried")
	}
}

func TestRetryDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 7: 5 * time.Minute, 100: 5 * time.Minute} {
		if got := retryDelay(DefaultRetryInitial, DefaultRetryMax, n); got != want {
			t.Errorf("retryDelay(%d) = %s, want %s", n, got, want)
		}
	}
}
