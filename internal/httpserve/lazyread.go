package httpserve

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// On a plain (not TLS) HTTP/1.1 connection net/http reads one byte in a
// goroutine of its own while each bodiless request's handler runs, to
// cancel the request's context if the client goes away; when the handler
// ends it sets a past read deadline to stop that read and waits for the
// goroutine. For a small proxied GET that is a read that finds nothing,
// a deadline wake-up and two goroutine hand-offs: with it removed, kas
// spent 15-20 % less CPU per proxied GET (docs/benchmarks.md, "kas's
// front door: the background read").
//
// LazyClientWatch makes that read lazy: the one-byte read net/http starts
// after reading a request returns at once, without touching the socket,
// and a handler that needs to know the client went away (a watch, logs
// -f: anything that may wait long for the other side) asks for it with
// WatchClient. A short request whose client leaves is noticed when its
// answer is written, as before for a request with a body.
//
// net/http only reads one byte at a time there: every other read goes
// through its 4 KiB bufio.Reader, and a (0, nil) to that reader only
// makes it read again. TestLazyReadTakesNetHTTPsBackgroundRead holds
// net/http to this.

// LazyClientWatch sets srv's ConnState and ConnContext hooks and returns
// ln with its plain TCP connections wrapped; a TLS connection (net/http
// must see a *tls.Conn) keeps net/http's own watch. Serve srv on the
// returned listener.
func LazyClientWatch(srv *http.Server, ln net.Listener) net.Listener {
	state, connCtx := srv.ConnState, srv.ConnContext
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if lc, ok := c.(*lazyConn); ok {
			// StateActive comes after a request's head is read and
			// before net/http starts its background read.
			lc.armed.Store(s == http.StateActive)
		}
		if state != nil {
			state(c, s)
		}
	}
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if lc, ok := c.(*lazyConn); ok {
			ctx = context.WithValue(ctx, lazyConnKey{}, lc)
		}
		if connCtx != nil {
			ctx = connCtx(ctx, c)
		}
		return ctx
	}
	return &lazyListener{Listener: ln}
}

type lazyConnKey struct{}

type lazyListener struct{ net.Listener }

func (l *lazyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(*tls.Conn); ok {
		return c, nil
	}
	return &lazyConn{Conn: c}, nil
}

// lazyConn takes net/http's background read (the first read after a
// request's head, of one byte) and holds a byte a client watch read.
type lazyConn struct {
	net.Conn
	armed atomic.Bool
	// skipped counts background reads taken (tests).
	skipped atomic.Int64

	mu         sync.Mutex
	hasPending atomic.Bool
	pending    byte // read by a client watch: the next request's first
	stopping   bool
}

func (c *lazyConn) Read(p []byte) (int, error) {
	if c.armed.Load() && c.armed.Swap(false) && len(p) == 1 {
		c.skipped.Add(1)
		return 0, nil
	}
	if c.hasPending.Load() && len(p) > 0 {
		c.mu.Lock()
		if c.hasPending.Load() {
			p[0] = c.pending
			c.hasPending.Store(false)
			c.mu.Unlock()
			return 1, nil
		}
		c.mu.Unlock()
	}
	return c.Conn.Read(p)
}

// CloseWrite passes through: net/http half-closes before closing a
// connection it refused, so that the client reads the answer.
func (c *lazyConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom passes through, keeping sendfile/splice for net/http and for
// a hijacked connection's copy.
func (c *lazyConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// ClientWatch notices a client going away while its request is served,
// once started. The zero of *ClientWatch (nil) does nothing: the request
// came on a connection net/http watches itself.
type ClientWatch struct {
	c      *lazyConn
	cancel context.CancelFunc
	done   chan struct{} // closed when the watching read returned
}

// WatchClient returns r with a context that is also canceled when the
// client closes the connection after w.Start, and w; the handler calls
// w.Stop before it returns. On a connection net/http watches itself it
// returns r and nil.
func WatchClient(r *http.Request) (*http.Request, *ClientWatch) {
	c, ok := r.Context().Value(lazyConnKey{}).(*lazyConn)
	if !ok {
		return r, nil
	}
	ctx, cancel := context.WithCancel(r.Context())
	return r.WithContext(ctx), &ClientWatch{c: c, cancel: cancel}
}

// Start watches the connection: a read of one byte that cancels the
// request's context if the client closes the connection or it fails. A
// byte that does arrive (the client sent its next request) is kept for
// net/http, and the watch ends, as net/http's own does. Start does
// nothing the second time.
func (w *ClientWatch) Start() {
	if w == nil || w.done != nil {
		return
	}
	w.done = make(chan struct{})
	go w.read()
}

func (w *ClientWatch) read() {
	defer close(w.done)
	var b [1]byte
	n, err := w.c.Conn.Read(b[:])
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	if n == 1 {
		w.c.pending = b[0]
		w.c.hasPending.Store(true)
		return
	}
	if err != nil && !w.c.stopping {
		w.cancel()
	}
}

// Stop ends the watch and waits for its read, leaving the connection
// for net/http's next request, and releases the context.
func (w *ClientWatch) Stop() {
	if w == nil {
		return
	}
	if w.done != nil {
		w.c.mu.Lock()
		w.c.stopping = true
		w.c.mu.Unlock()
		_ = w.c.Conn.SetReadDeadline(aLongTimeAgo)
		<-w.done
		_ = w.c.Conn.SetReadDeadline(time.Time{})
		w.c.mu.Lock()
		w.c.stopping = false
		w.c.mu.Unlock()
	}
	w.cancel()
}

// aLongTimeAgo is a read deadline that ends a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)
