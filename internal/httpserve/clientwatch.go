package httpserve

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"
)

// ClientWatch notices, once started, the client of a request ServeFast
// answers going away: net/http's own watch (a goroutine reading one byte
// while the handler runs) is what ServeFast does without. The zero of
// *ClientWatch (nil) does nothing: net/http watches the request's
// connection itself.
type ClientWatch struct {
	fc       *fastConn
	cancel   context.CancelFunc
	done     chan struct{} // closed when the watching read returned
	stopping atomic.Bool   // Stop ends the read: not the client leaving
}

// WatchClient returns the watch for r's connection, nil for a request
// net/http serves (it cancels the request's context when the client
// leaves). The handler calls Stop before it returns.
func WatchClient(r *http.Request) *ClientWatch {
	fc, ok := r.Context().Value(fastConnKey{}).(*fastConn)
	if !ok {
		return nil
	}
	fc.f.mu.Lock()
	cancel := fc.cancel
	fc.f.mu.Unlock()
	if cancel == nil {
		return nil
	}
	return &ClientWatch{fc: fc, cancel: cancel}
}

// Start watches the connection: a read that cancels the request's
// context if the client closes the connection (or it fails). Data that
// does arrive (the client's next request) stays for the next request,
// and the watch ends, as net/http's does. A second Start does nothing.
func (w *ClientWatch) Start() {
	if w == nil || w.done != nil {
		return
	}
	w.done = make(chan struct{})
	go w.read()
}

func (w *ClientWatch) read() {
	defer close(w.done)
	// The handler does not read the connection (a request ServeFast
	// answers has no body), so the buffer is this goroutine's.
	_, err := w.fc.br.Peek(1)
	if err != nil && !w.stopping.Load() {
		w.cancel()
	}
}

// Stop ends the watch and waits for its read, leaving the connection as
// it was for the next request.
func (w *ClientWatch) Stop() {
	if w == nil || w.done == nil {
		return
	}
	w.stopping.Store(true)
	_ = w.fc.c.SetReadDeadline(aLongTimeAgo)
	<-w.done
	_ = w.fc.c.SetReadDeadline(time.Time{})
}

// aLongTimeAgo is a read deadline that ends a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)
