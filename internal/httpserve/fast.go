package httpserve

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// ServeFast serves srv on ln as ServeServer does, except that it answers
// plain (not TLS) HTTP/1.1 GET and HEAD requests without a body itself,
// on the connection's goroutine, the way net/http would (fastwriter.go).
// For such a request net/http also starts a goroutine that reads one
// byte, to notice the client leaving, and stops it when the handler
// returns: on a small proxied GET that was 7-8 % of kas+agentk's CPU
// (docs/benchmarks.md, "kas's front door"). A handler that needs to know
// that its client left (a watch) asks for it with WatchClient.
//
// The first request that is anything else (a body, an upgrade, HTTP/1.0,
// a malformed or oversized head) hands the connection, with the bytes
// read from it since that request began, to srv, which serves it from
// then on as if it had accepted it: net/http's own parser, limits and
// error answers apply. So do TLS connections, from the start.
//
// srv's Handler, ReadHeaderTimeout, ReadTimeout, WriteTimeout,
// IdleTimeout, MaxHeaderBytes, MaxHeaderValueCount and ErrorLog apply to
// the requests ServeFast answers; its BaseContext, ConnContext and
// ConnState hooks only to connections srv serves.
func ServeFast(ctx context.Context, ln net.Listener, srv *http.Server, grace time.Duration) error {
	f := &fastServer{srv: srv, conns: map[*fastConn]struct{}{},
		handoff: NewConnListener(ln.Addr())}
	f.base = context.WithValue(context.Background(), http.ServerContextKey, srv)
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(f.handoff) }()
	acceptDone := make(chan error, 1)
	go func() { acceptDone <- f.accept(ln) }()
	var err error
	select {
	case err = <-acceptDone:
		acceptDone <- err
	case err = <-srvDone:
		srvDone <- err
	case <-ctx.Done():
	}
	ln.Close()
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	})
	f.shutdown(sctx)
	wg.Wait()
	for _, e := range []error{<-acceptDone, <-srvDone, err} {
		if e != nil && !errors.Is(e, http.ErrServerClosed) && !errors.Is(e, net.ErrClosed) {
			return e
		}
	}
	return nil
}

type fastServer struct {
	srv     *http.Server
	base    context.Context
	handoff *ConnListener // what srv accepts from

	mu       sync.Mutex
	conns    map[*fastConn]struct{}
	closing  bool // under mu
	stopping atomic.Bool
	wg       sync.WaitGroup
}

func (f *fastServer) accept(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.isClosing() {
				return nil
			}
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				// As net/http: a temporary failure (too many open
				// files) waits and retries.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if _, ok := c.(*tls.Conn); ok {
			f.handoff.Give(context.Background(), c)
			continue
		}
		fc := &fastConn{f: f, c: c}
		f.mu.Lock()
		if f.closing {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.conns[fc] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go fc.serve()
	}
}

func (f *fastServer) isClosing() bool { return f.stopping.Load() }

// shutdown closes the idle connections, lets the active ones finish
// their request until ctx ends, then closes them and cancels their
// requests.
func (f *fastServer) shutdown(ctx context.Context) {
	f.mu.Lock()
	f.closing = true
	f.stopping.Store(true)
	for fc := range f.conns {
		if !fc.active {
			fc.c.Close()
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	f.mu.Lock()
	for fc := range f.conns {
		fc.c.Close()
		if fc.cancel != nil {
			fc.cancel()
		}
	}
	f.mu.Unlock()
	// As http.Server.Close, not forever: a handler that ignores its
	// context must not hold up the stop.
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

func (f *fastServer) logf(format string, args ...any) {
	if f.srv.ErrorLog != nil {
		f.srv.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// fastConn is one plain connection served by ServeFast.
type fastConn struct {
	f          *fastServer
	c          net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
	body       *bufio.Writer // a response's first 2 KiB (net/http's bufferBeforeChunkingSize)
	ctx        context.Context
	remoteAddr string

	// rec is what was read from c since the current request began
	// (handed to srv with the connection if ServeFast does not answer
	// it), while recording; readErr is c's last read error.
	rec       []byte
	recording bool
	readErr   error
	// headRead counts the bytes read from c for the current head: what
	// net/http's limit counts (not those buffered before it began).
	headRead int

	// under f.mu
	active bool
	cancel context.CancelFunc // the current request's
}

type fastConnKey struct{}

// Read is the connection as its bufio.Reader sees it: a request's bytes
// are recorded, in case srv has to serve it instead.
func (fc *fastConn) Read(p []byte) (int, error) {
	n, err := fc.c.Read(p)
	if fc.recording {
		fc.rec = append(fc.rec, p[:n]...)
		fc.headRead += n
		if fc.headRead > fc.headLimit() && err == nil {
			err = errHeadTooLarge
		}
	}
	fc.readErr = err
	return n, err
}

var errHeadTooLarge = errors.New("request head too large")

// headLimit is net/http's: MaxHeaderBytes (default 1 MiB) and 4 KiB of
// slack. Past it the connection goes to net/http, which answers 431. (A
// request handed over for another reason is counted by net/http with
// the bytes read before its head began, up to 4 KiB of a pipelined
// request: such a request near the limit gets a 431 that net/http alone
// would have let through.)
func (fc *fastConn) headLimit() int {
	n := fc.f.srv.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	return n + 4096
}

func (fc *fastConn) serve() {
	f := fc.f
	handedOff := false
	defer func() {
		if !handedOff {
			fc.c.Close()
		}
		f.mu.Lock()
		delete(f.conns, fc)
		f.mu.Unlock()
		f.wg.Done()
	}()
	fc.br = bufio.NewReaderSize(fc, 4096)
	fc.bw = bufio.NewWriterSize(fc.c, 4096)
	fc.remoteAddr = fc.c.RemoteAddr().String()
	fc.ctx = context.WithValue(context.WithValue(f.base, http.LocalAddrContextKey, fc.c.LocalAddr()), fastConnKey{}, fc)
	for first := true; ; first = false {
		// As net/http: between requests, wait up to IdleTimeout for the
		// next one's first bytes (and give up on fewer than 4); the head
		// then has ReadHeaderTimeout, from the connection's start for
		// the first.
		if !first {
			if d := idleTimeout(f.srv); d > 0 {
				_ = fc.c.SetReadDeadline(time.Now().Add(d))
			} else {
				_ = fc.c.SetReadDeadline(time.Time{})
			}
			if _, err := fc.br.Peek(4); err != nil {
				return
			}
		}
		if d := readHeaderTimeout(f.srv); d > 0 {
			_ = fc.c.SetReadDeadline(time.Now().Add(d))
		} else {
			_ = fc.c.SetReadDeadline(time.Time{})
		}
		buffered, _ := fc.br.Peek(fc.br.Buffered())
		fc.rec = append(fc.rec[:0], buffered...)
		fc.recording, fc.readErr, fc.headRead = true, nil, 0
		req, err := http.ReadRequest(fc.br)
		fc.recording = false
		f.mu.Lock()
		if f.closing {
			f.mu.Unlock()
			return // as net/http: a request read while stopping is not answered
		}
		fc.active = true
		f.mu.Unlock()
		if err != nil && fc.readErr != nil && !errors.Is(fc.readErr, errHeadTooLarge) && !errors.Is(fc.readErr, io.EOF) {
			return // a timeout or a reset mid-head: net/http closes too
		}
		// Anything else, a half-closed client included (net/http answers
		// a partial head with a 400), net/http decides.
		if err != nil || !answersItself(req, f.srv) {
			handedOff = true
			handedOver.Add(1)
			_ = fc.c.SetReadDeadline(time.Time{})
			f.handoff.Give(context.Background(), &replayConn{Conn: fc.c, pending: fc.rec})
			return
		}
		if cap(fc.rec) > 64<<10 {
			fc.rec = nil // a large head's copy is not kept for an idle connection
		}
		if d := f.srv.WriteTimeout; d > 0 {
			_ = fc.c.SetWriteDeadline(time.Now().Add(d))
		}
		// The head is read; a request here has no body to bound, but
		// net/http keeps ReadTimeout from the head's start.
		if f.srv.ReadTimeout > 0 {
			_ = fc.c.SetReadDeadline(time.Now().Add(f.srv.ReadTimeout))
		} else {
			_ = fc.c.SetReadDeadline(time.Time{})
		}
		answered.Add(1)
		if !fc.serveRequest(req) {
			return
		}
		f.mu.Lock()
		fc.active = false
		closing := f.closing
		f.mu.Unlock()
		if closing {
			return
		}
	}
}

// answersItself says whether ServeFast answers req rather than srv:
// HTTP/1.1, GET or HEAD, no body, no upgrade, no Expect, and what
// net/http checks after parsing holds (a valid Host header, valid header
// names and values, at most srv's MaxHeaderValueCount header lines). A
// request in absolute form goes to srv: only it can tell whether it had
// a Host header (http.ReadRequest drops it).
func answersItself(req *http.Request, srv *http.Server) bool {
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 ||
		(req.Method != http.MethodGet && req.Method != http.MethodHead) ||
		req.ContentLength != 0 || len(req.TransferEncoding) != 0 || req.Body != http.NoBody ||
		req.URL.Host != "" || req.Host == "" || !httpguts.ValidHostHeader(req.Host) {
		return false
	}
	if _, ok := req.Header["Expect"]; ok {
		return false
	}
	if _, ok := req.Header["Upgrade"]; ok || httpguts.HeaderValuesContainsToken(req.Header["Connection"], "upgrade") {
		return false
	}
	lines := 1 // Host
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
		lines += len(vs)
	}
	maxLines := srv.MaxHeaderValueCount
	if maxLines <= 0 {
		maxLines = http.DefaultMaxHeaderValueCount
	}
	return lines <= maxLines
}

// answered and handedOver count requests ServeFast answered and
// connections it handed to net/http (tests).
var answered, handedOver atomic.Int64

// serveRequest runs the handler for req and finishes its response; it
// reports whether the connection may carry another request.
func (fc *fastConn) serveRequest(req *http.Request) (keep bool) {
	ctx, cancel := context.WithCancel(fc.ctx)
	fc.f.mu.Lock()
	fc.cancel = cancel
	fc.f.mu.Unlock()
	defer func() {
		cancel()
		fc.f.mu.Lock()
		fc.cancel = nil
		fc.f.mu.Unlock()
	}()
	req = req.WithContext(ctx)
	req.RemoteAddr = fc.remoteAddr
	fc.body = bodyBufs.Get().(*bufio.Writer)
	w := newFastWriter(fc, req)
	defer func() {
		// A handler's goroutine that writes after it returned gets
		// errFinished, not the buffer's next user.
		w.done, w.body = true, nil
		fc.body.Reset(nil)
		bodyBufs.Put(fc.body)
		fc.body = nil
		if p := recover(); p != nil {
			keep = false
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				fc.f.logf("http: panic serving %v: %v\n%s", fc.remoteAddr, p, buf)
			}
		}
	}()
	h := fc.f.srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	h.ServeHTTP(w, req)
	cancel() // as net/http: the context ends before the response's last write
	return w.finish()
}

// bodyBufs hold a response's first 2 KiB while it is written, as
// net/http's pool does: an idle connection keeps none.
var bodyBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 2048) }}

func readHeaderTimeout(srv *http.Server) time.Duration {
	if srv.ReadHeaderTimeout != 0 {
		return srv.ReadHeaderTimeout
	}
	return srv.ReadTimeout
}

func idleTimeout(srv *http.Server) time.Duration {
	if srv.IdleTimeout != 0 {
		return srv.IdleTimeout
	}
	return srv.ReadTimeout
}

// replayConn gives the bytes ServeFast read of a request it handed over
// before the rest of the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite and ReadFrom pass through (closeWrite, readFrom).
func (c *replayConn) CloseWrite() error                   { return closeWrite(c.Conn) }
func (c *replayConn) ReadFrom(r io.Reader) (int64, error) { return readFrom(c.Conn, r) }
