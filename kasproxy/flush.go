package kasproxy

import (
	"net/http"
	"sync"

	"kubetunnel/tunnel/wire"
)

// batchWriter turns the flushes httputil.ReverseProxy makes after every
// write of an answer of unknown length into wire.BatchFlush's: for a GET
// of an object or a list (wire.Batchable), which the API server sends
// chunked, the answer leaves in net/http's full buffers instead of a
// chunk, a flush, a write deadline and system calls per tunnel read.
// The handler stops it before its own final flush.
type batchWriter struct {
	http.ResponseWriter
	rc *http.ResponseController

	mu    sync.Mutex // serialises writes with the timer's flush
	batch wire.BatchFlush
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
	w.ResponseWriter.WriteHeader(code)
}

func (w *batchWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.batch.Request(w.flushDue) {
		_ = w.rc.Flush()
	}
}

func (w *batchWriter) flushDue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.batch.Due() {
		_ = w.rc.Flush()
	}
}

// stop ends the timer: from then on a Flush flushes at once (the
// handler's final one, which sends what a due flush would have).
func (w *batchWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.batch.Stop()
}

func (w *batchWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
