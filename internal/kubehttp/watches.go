package kubehttp

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// IsWatch reports whether r asks for a watch (?watch=true, or the old
// /watch/ paths): a response that never ends by itself.
func IsWatch(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if strings.Contains(r.URL.Path, "/watch/") {
		return true
	}
	// Parse the query only when it may say watch (most GETs do not).
	if strings.Contains(r.URL.RawQuery, "watch") {
		if w := r.URL.Query().Get("watch"); w == "true" || w == "1" {
			return true
		}
	}
	return false
}

// Watches holds the watch responses in flight through a proxy, so that a
// proxy that stops can end them cleanly: after Stop each one reads EOF,
// and its caller sees a watch the server closed (which clients
// re-establish) instead of a broken stream.
type Watches struct {
	mu      sync.Mutex // guards set and stopped
	set     map[*WatchBody]struct{}
	stopped bool
}

// WatchBody is a watch response body held by Watches; closing it lets go.
type WatchBody struct {
	io.ReadCloser
	w       *Watches
	stopped atomic.Bool
}

func (b *WatchBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.stopped.Load() {
		return n, io.EOF
	}
	return n, err
}

// Close closes the body and stops tracking it.
func (b *WatchBody) Close() error {
	b.w.mu.Lock()
	delete(b.w.set, b)
	b.w.mu.Unlock()
	return b.ReadCloser.Close()
}

func (b *WatchBody) stop() {
	b.stopped.Store(true)
	b.ReadCloser.Close() // unblocks a Read waiting for the next event
}

// Track wraps a watch response body; after Stop it returns false and the
// watch must be refused.
func (w *Watches) Track(body io.ReadCloser) (*WatchBody, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return nil, false
	}
	if w.set == nil {
		w.set = map[*WatchBody]struct{}{}
	}
	b := &WatchBody{ReadCloser: body, w: w}
	w.set[b] = struct{}{}
	return b, true
}

// Stop ends every watch in flight cleanly and refuses new ones.
func (w *Watches) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	for b := range w.set {
		b.stop()
	}
}
