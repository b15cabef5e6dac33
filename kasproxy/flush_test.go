package kasproxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// flushRecorder counts flushes and what was written before the last one.
type flushRecorder struct {
	mu      sync.Mutex
	header  http.Header
	written int
	flushed int // bytes written before the last flush
	flushes int
}

func (r *flushRecorder) Header() http.Header { return r.header }
func (r *flushRecorder) WriteHeader(int)     {}
func (r *flushRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.written += len(p)
	return len(p), nil
}

func (r *flushRecorder) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes++
	r.flushed = r.written
}

func (r *flushRecorder) state() (flushes, flushed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushes, r.flushed
}

// pieceBody gives n pieces of size bytes, one per Read, after the
// pieces before gate (if any) are read and gate is closed.
type pieceBody struct {
	n, size, before int
	gate            chan struct{}
}

func (b *pieceBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, io.EOF
	}
	if b.before == 0 && b.gate != nil {
		<-b.gate
	}
	b.before--
	b.n--
	return copy(p, bytes.Repeat([]byte("x"), min(b.size, len(p)))), nil
}
func (b *pieceBody) Close() error { return nil }

type bodyTunnel struct {
	body        func() io.ReadCloser
	contentType string // of the answer, when set
}

func (t bodyTunnel) RoundTripper(string) (http.RoundTripper, error) {
	return RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
		h := http.Header{}
		if t.contentType != "" {
			h.Set("Content-Type", t.contentType)
		}
		return &http.Response{StatusCode: 200, Header: h, Body: t.body(), ContentLength: -1, Request: r}, nil
	}), nil
}

func serveRecorded(p *Proxy, path string) *flushRecorder {
	rec := &flushRecorder{header: http.Header{}}
	serveInto(p, path, rec)
	return rec
}

func serveInto(p *Proxy, path string, rec *flushRecorder) {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set("Authorization", "Bearer alice-token")
	p.ServeHTTP(rec, r)
}

// A list of unknown length (the API server's chunked answer) is not
// flushed after every piece; a watch, logs -f and a proxied service
// still are, piece by piece.
func TestChunkedListBatched(t *testing.T) {
	const pieces = 100
	p := New(Config{Users: fakeUsers{}, Tunnels: bodyTunnel{body: func() io.ReadCloser { return &pieceBody{n: pieces, size: 8 << 10} }}})
	rec := serveRecorded(p, "/agents/prod/api/v1/namespaces/default/configmaps")
	if rec.written != pieces*8<<10 {
		t.Fatalf("list: %d bytes, want %d", rec.written, pieces*8<<10)
	}
	if rec.flushes > 5 {
		t.Errorf("list: %d flushes for %d pieces, want a few", rec.flushes, pieces)
	}
	for _, path := range []string{
		"/agents/prod/api/v1/namespaces/default/configmaps?watch=true",
		"/agents/prod/api/v1/namespaces/default/pods/p/log?follow=true",
		"/agents/prod/api/v1/namespaces/default/services/s:80/proxy/events",
		"/agents/prod/api/v1/namespaces/default/pods/p:8080/proxy/",
	} {
		rec := serveRecorded(p, path)
		if rec.flushes < pieces {
			t.Errorf("%s: %d flushes for %d pieces, want one each", path, rec.flushes, pieces)
		}
	}
}

// A plain GET answered with a stream of events (an aggregated API's
// server-sent events, a watch stream) is flushed piece by piece.
func TestStreamingAnswerNotBatched(t *testing.T) {
	const pieces = 20
	for _, ct := range []string{"text/event-stream", "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch"} {
		p := New(Config{Users: fakeUsers{}, Tunnels: bodyTunnel{contentType: ct, body: func() io.ReadCloser { return &pieceBody{n: pieces, size: 100} }}})
		rec := serveRecorded(p, "/agents/prod/apis/events.example.com/v1/stream")
		if rec.flushes < pieces {
			t.Errorf("%s: %d flushes for %d pieces, want one each", ct, rec.flushes, pieces)
		}
	}
}

// A batched answer whose body pauses is still flushed within
// batchFlushDelay: the caller gets what came before the pause.
func TestChunkedListPauseFlushed(t *testing.T) {
	gate := make(chan struct{})
	p := New(Config{Users: fakeUsers{}, Tunnels: bodyTunnel{body: func() io.ReadCloser {
		return &pieceBody{n: 4, size: 1 << 10, before: 3, gate: gate}
	}}})
	rec := &flushRecorder{header: http.Header{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveInto(p, "/agents/prod/api/v1/configmaps", rec)
	}()
	start := time.Now()
	for {
		if _, flushed := rec.state(); flushed == 3<<10 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the 3 KiB before the pause were not flushed within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("flushed %v after the response started", time.Since(start))
	close(gate)
	<-done
	if flushes, flushed := rec.state(); rec.written != 4<<10 || flushed != 4<<10 {
		t.Errorf("%d bytes written, %d flushed (%d flushes); want 4 KiB both", rec.written, flushed, flushes)
	}
}

// A watch's head reaches the caller before any event: kubectl get -w
// counts the watch as started once it has the head, and a quiet watch may
// send nothing for minutes.
func TestWatchHeadFlushedBeforeEvents(t *testing.T) {
	gate := make(chan struct{})
	p := New(Config{Users: fakeUsers{}, Tunnels: bodyTunnel{body: func() io.ReadCloser {
		return &pieceBody{n: 1, size: 100, gate: gate}
	}}})
	rec := &flushRecorder{header: http.Header{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveInto(p, "/agents/prod/api/v1/namespaces/default/configmaps?watch=true", rec)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for flushes, _ := rec.state(); flushes == 0; flushes, _ = rec.state() {
		if time.Now().After(deadline) {
			t.Fatal("the watch's head was not flushed before its first event")
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	<-done
	if rec.written != 100 {
		t.Errorf("%d bytes written, want the event's 100", rec.written)
	}
}
