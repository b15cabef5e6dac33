package kasproxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// blockingWriter's writes wait until release is closed.
type blockingWriter struct {
	*httptest.ResponseRecorder
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.ResponseRecorder.Write(p)
}

// A write blocked past StallAfter is charged to the budget while it
// blocks, and refunded when it ends; quick writes are never charged; the
// watching goroutine is gone once no write is in progress.
func TestStallWatch(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const window = 1 << 20
	b := newBudget(window, 4*window, 8*window)
	s := newStallWatch(40 * time.Millisecond)
	guard := func(w http.ResponseWriter) *guardedWriter {
		return &guardedWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: time.Minute,
			watch: s, b: b, user: "alice", ri: &reqInfo{}}
	}
	quick := guard(httptest.NewRecorder())
	for range 20 {
		if _, err := quick.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if b.Used() != 0 {
		t.Fatalf("quick writes charged %d bytes", b.Used())
	}
	bw := &blockingWriter{ResponseRecorder: httptest.NewRecorder(), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := guard(bw).Write([]byte("stalled"))
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for b.Used() != window {
		if time.Now().After(deadline) {
			t.Fatalf("a write blocked past StallAfter is charged %d bytes, want %d", b.Used(), window)
		}
		time.Sleep(5 * time.Millisecond) // polling the budget the watch charges
	}
	close(bw.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b.Used() != 0 {
		t.Fatalf("%d bytes still charged after the write ended", b.Used())
	}
}
