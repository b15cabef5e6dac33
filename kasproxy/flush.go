package kasproxy

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// batchFlushDelay bounds how long a flush of a batched response (see
// batchable) waits for more of the body.
const batchFlushDelay = 5 * time.Millisecond

// batchable says whether a response of unknown length (chunked: the API
// server answers a large list or object that way) may go to the caller
// in full buffers instead of a flush per write. httputil.ReverseProxy
// flushes after every write of such a response, which for a 1 MB list is
// a system call, a chunk and a deadline per tunnel frame, for nothing:
// the API server writes a list as fast as it encodes it. Only GETs of
// objects and lists qualify; watches, logs (follow), proxied services
// and port-forward or exec stream, and keep a flush per write, as does
// a GET answered with a streaming content type (batchWriter.WriteHeader).
func batchable(r *http.Request, verb, rest string) bool {
	if verb != "get" || r.Method != http.MethodGet || strings.Contains(r.URL.RawQuery, "follow") {
		return false
	}
	for s := range strings.SplitSeq(rest, "/") {
		if s == "log" || s == "proxy" || strings.HasPrefix(s, "proxy:") {
			return false
		}
	}
	return true
}

// batchWriter turns the flushes ReverseProxy makes after every write
// into one flush at most batchFlushDelay later, so a response whose body
// comes in a burst leaves in the server's full buffers, and one whose
// body pauses is still sent within batchFlushDelay. The handler flushes
// it (stop) before it returns.
type batchWriter struct {
	http.ResponseWriter
	rc *http.ResponseController

	mu      sync.Mutex // serialises writes with the timer's flush
	timer   *time.Timer
	pending bool // a flush is due when the timer fires
	stopped bool
}

func newBatchWriter(w http.ResponseWriter) *batchWriter {
	return &batchWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
}

func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

func (w *batchWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if streamingType(w.Header().Get("Content-Type")) {
		// The answer is a stream of events, whatever the request looked
		// like (an aggregated API's plain GET): every flush goes at once.
		w.stopped = true
	}
	w.ResponseWriter.WriteHeader(code)
}

// streamingType reports a content type whose writes are events that must
// reach the caller one by one: server-sent events, or a Kubernetes watch
// stream (application/json;stream=watch and its protobuf twin).
func streamingType(ct string) bool {
	return strings.HasPrefix(ct, "text/event-stream") || strings.Contains(ct, "stream=watch")
}

// Flush schedules a flush; the first one (the head) goes at once, so a
// caller sees the answer start as soon as it did before.
func (w *batchWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopped:
		_ = w.rc.Flush()
	case w.pending:
	case w.timer == nil:
		_ = w.rc.Flush()
		w.timer = time.AfterFunc(batchFlushDelay, w.flushDue)
		w.timer.Stop()
	default:
		w.pending = true
		w.timer.Reset(batchFlushDelay)
	}
}

func (w *batchWriter) flushDue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending && !w.stopped {
		w.pending = false
		_ = w.rc.Flush()
	}
}

// stop ends the timer: from then on a Flush flushes at once (the
// handler's final one, which sends what a due flush would have).
func (w *batchWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *batchWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
