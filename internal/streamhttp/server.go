package streamhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Defaults for a Server's zero fields.
const (
	DefaultMaxHeaderBytes = http.DefaultMaxHeaderBytes
	DefaultWatchAfter     = 10 * time.Millisecond
)

// maxDrain is how much of a request body the handler left unread is read
// and dropped to keep the stream; a stream with more is closed instead.
const maxDrain = 256 << 10

var errHeaderTooLarge = errors.New("request header too large")

// Server serves HTTP/1.1 on every stream a listener accepts (agentk: the
// streams kas opens on the tunnel session), one request at a time per
// stream, and runs the handler on the stream's own goroutine.
//
// net/http's server starts a goroutine per request that reads ahead to
// notice a caller who goes away, and stops it when the handler returns.
// Server watches only requests still running after WatchAfter (a watch,
// logs -f, a slow list), so a small GET costs no extra goroutine. A
// request with a body is not watched: the handler sees a caller who goes
// away while it reads the body, or when it writes the response.
type Server struct {
	Handler http.Handler
	// ConnContext, like http.Server's, derives the context of a stream's
	// requests.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// MaxHeaderBytes bounds a request's header (DefaultMaxHeaderBytes); a
	// larger one gets 431.
	MaxHeaderBytes int
	// WatchAfter is how long a request without a body runs before its
	// stream is watched for the caller going away (DefaultWatchAfter).
	WatchAfter time.Duration
	// Logger gets handler panics (nil: discarded).
	Logger *slog.Logger
	// Other, when set, serves a request whose first byte is OtherPrefix
	// instead of HTTP/1.1 (agentk: tunnel protocol 2, tunnel/wire), on
	// the stream's goroutine, with br holding what was read. keep says
	// whether the stream can carry the next request; else it closes. No
	// HTTP/1.1 request starts with a byte outside ASCII letters.
	OtherPrefix byte
	Other       func(ctx context.Context, c net.Conn, br *bufio.Reader) (keep bool)

	mu       sync.Mutex            // guards the fields below
	conns    map[net.Conn]struct{} // streams being served
	idle     map[net.Conn]struct{} // those waiting for their next request
	draining bool
	drained  chan struct{}
}

// Drain makes the running Serve give streams up: idle ones (waiting for
// their next request) close now, the others once their current request
// is answered. The channel closes when no stream is left. Serve itself
// goes on until its ctx is done, serving what still arrives one request
// per stream. agentk drains when it stops, after telling kas (yamux
// GoAway) to open no more streams.
func (s *Server) Drain() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drained == nil {
		s.drained = make(chan struct{})
	}
	if !s.draining {
		s.draining = true
		// A read deadline, not Close, ends the wait for the next request:
		// closing a yamux stream only ends our side of it, and the read
		// would go on until kas closes its side.
		for c := range s.idle {
			c.SetReadDeadline(aLongTimeAgo)
		}
		s.checkDrainedLocked()
	}
	return s.drained
}

func (s *Server) checkDrainedLocked() {
	if s.draining && len(s.conns) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// setIdle records whether c waits for its next request; it reports false
// when c must close instead (the server is draining).
func (s *Server) setIdle(c net.Conn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idle {
		if s.draining {
			return false
		}
		if s.idle == nil {
			s.idle = map[net.Conn]struct{}{}
		}
		s.idle[c] = struct{}{}
	} else {
		delete(s.idle, c)
	}
	return true
}

// track adds c to the streams being served, or removes it.
func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.conns == nil {
			s.conns = map[net.Conn]struct{}{}
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	s.checkDrainedLocked()
}

// stub is what ReverseProxy finds under http.ServerContextKey: with it,
// a response cut short mid-copy panics with http.ErrAbortHandler (which
// serveConn recovers and answers by closing the stream) instead of
// returning as if the response were complete.
var stub = &http.Server{}

// Serve serves the streams l accepts until l fails or ctx is done; it
// closes l then, and returns once every handler has returned (their
// contexts are cancelled).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.track(c, true)
		wg.Go(func() {
			s.serveConn(ctx, c)
			s.track(c, false)
		})
	}
}

// limitedConn caps how much the header reader may pull from the stream.
type limitedConn struct {
	net.Conn
	n int64
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.Conn.Read(p)
	l.n -= int64(n)
	return n, err
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	hijacked := false
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			if s.Logger != nil {
				s.Logger.Error("Handler panicked; closing the stream", "panic", v)
			}
		}
		if !hijacked {
			c.Close()
		}
	}()
	if s.ConnContext != nil {
		ctx = s.ConnContext(ctx, c)
	}
	ctx = context.WithValue(ctx, http.ServerContextKey, stub)
	maxHeader := int64(s.MaxHeaderBytes)
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	watchAfter := s.WatchAfter
	if watchAfter <= 0 {
		watchAfter = DefaultWatchAfter
	}
	lc := &limitedConn{Conn: c}
	br := bufio.NewReaderSize(lc, bufSize)
	bw := bufio.NewWriterSize(c, bufSize)
	for first := true; ; first = false {
		// The header may fill the read buffer past its own end.
		lc.n = maxHeader + bufSize
		// Idle until the next request's first byte: Drain closes the
		// stream meanwhile. A new stream gets its first request served
		// even while draining: it was opened for one.
		if !s.setIdle(c, true) && !first {
			return
		}
		b, err := br.Peek(1)
		s.setIdle(c, false)
		if err != nil {
			return
		}
		if s.Other != nil && b[0] == s.OtherPrefix {
			lc.n = math.MaxInt64
			if !s.Other(ctx, c, br) {
				return
			}
			continue
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			if errors.Is(err, errHeaderTooLarge) {
				badRequest(bw, http.StatusRequestHeaderFieldsTooLarge, "request header too large")
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				badRequest(bw, http.StatusBadRequest, err.Error())
			}
			return
		}
		lc.n = math.MaxInt64
		var keep bool
		keep, hijacked = s.serveRequest(ctx, c, br, bw, req, watchAfter)
		if !keep {
			return
		}
	}
}

// badRequest answers what could not be parsed; the stream closes after.
func badRequest(bw *bufio.Writer, code int, msg string) {
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(msg), msg)
	bw.Flush()
}

// serveRequest runs the handler for req and finishes the response. keep
// says whether the stream can carry the next request.
func (s *Server) serveRequest(ctx context.Context, c net.Conn, br *bufio.Reader, bw *bufio.Writer, req *http.Request, watchAfter time.Duration) (keep, hijacked bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req = req.WithContext(ctx)
	req.RemoteAddr = c.RemoteAddr().String()
	w := &response{c: c, br: br, bw: bw, req: req, header: http.Header{}, length: -1}
	var body *requestBody
	if req.Body != http.NoBody {
		body = &requestBody{rc: req.Body, w: w, expect: strings.EqualFold(req.Header.Get("Expect"), "100-continue")}
		req.Body = body
	} else {
		w.watch = time.AfterFunc(watchAfter, func() { w.watchStream(cancel) })
	}
	s.Handler.ServeHTTP(w, req)
	w.stopWatch()
	if w.hijacked {
		return false, true
	}
	if !w.finish() {
		return false, false
	}
	if body != nil && !body.drain() {
		return false, false
	}
	return !req.Close && !w.closeAfter, false
}

// response is the http.ResponseWriter (with Flush and Hijack) of one
// request.
type response struct {
	c   net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	req *http.Request

	header      http.Header
	wroteHeader bool
	noBody      bool  // HEAD, 1xx, 204, 304
	chunked     bool  // no Content-Length: chunked encoding
	length      int64 // the declared Content-Length, -1 if none
	written     int64
	trailers    []string // announced in the Trailer header
	closeAfter  bool
	hijacked    bool
	err         error // the first write error; the stream is lost after it

	// watch runs watchStream once the request has run for WatchAfter.
	watch   *time.Timer
	watchMu sync.Mutex // guards watched
	watched chan struct{}
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader || w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational: sent at once, the final answer follows.
		w.writeHead(code)
		w.flush()
		return
	}
	w.wroteHeader = true
	h := w.header
	w.noBody = w.req.Method == http.MethodHead || code/100 == 1 || code == http.StatusNoContent || code == http.StatusNotModified
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			h.Del("Content-Length")
		}
	}
	h.Del("Transfer-Encoding")
	if !w.noBody && w.length < 0 {
		w.chunked = true
		h.Set("Transfer-Encoding", "chunked")
	}
	if w.req.Close || httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		w.closeAfter = true
		h.Set("Connection", "close")
	}
	if _, ok := h["Date"]; !ok {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if w.chunked {
		for _, v := range h["Trailer"] {
			for k := range strings.SplitSeq(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(k))
				}
			}
		}
	}
	w.writeHead(code)
}

// writeHead writes the status line and the header (minus trailer values).
func (w *response) writeHead(code int) {
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	fmt.Fprintf(w.bw, "HTTP/1.1 %03d %s\r\n", code, text)
	for k, vs := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vs {
			writeField(w.bw, k, v)
		}
	}
	w.bw.WriteString("\r\n")
}

// writeField writes one header line as net/http's Header.Write does: CR
// and LF in the value (which would split the message) become spaces, and
// the value is trimmed.
func writeField(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = newlineToSpace.Replace(v)
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(textproto.TrimString(v))
	bw.WriteString("\r\n")
}

var newlineToSpace = strings.NewReplacer("\n", " ", "\r", " ")

func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	if w.chunked && len(p)+chunkOverhead > w.bw.Available() {
		return w.writeChunk(p)
	}
	if w.chunked {
		fmt.Fprintf(w.bw, "%x\r\n", len(p))
	}
	n, err := w.bw.Write(p)
	if w.chunked && err == nil {
		_, err = w.bw.WriteString("\r\n")
	}
	w.written += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// chunkOverhead is a chunk's size line and trailing CRLF, at most.
const chunkOverhead = 16 + 2 + 2

// chunkBufs holds buffers for writeChunk, sized for ReverseProxy's 32 KiB
// copies.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10+chunkOverhead); return &b }}

// writeChunk sends a chunk too large for the buffer in one write (size
// line, data, CRLF) instead of three: each write is a tunnel frame and,
// at the far end, a system call.
func (w *response) writeChunk(p []byte) (int, error) {
	if w.flush() != nil {
		return 0, w.err
	}
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	b := strconv.AppendInt((*bp)[:0], int64(len(p)), 16)
	b = append(b, '\r', '\n')
	b = append(b, p...)
	b = append(b, '\r', '\n')
	if cap(b) <= 64<<10 {
		*bp = b // keep a grown buffer, within reason
	}
	if _, err := w.c.Write(b); err != nil {
		w.err = err
		return 0, err
	}
	w.written += int64(len(p))
	return len(p), nil
}

// FlushError sends what is buffered (http.ResponseController uses it).
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.flush()
}

func (w *response) Flush() { _ = w.FlushError() }

func (w *response) flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = err
	}
	return w.err
}

// Hijack hands the stream to the handler (ReverseProxy does it for
// upgrades: exec, attach, port-forward).
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		return nil, nil, errors.New("streamhttp: Hijack after the response header was written")
	}
	w.stopWatch()
	w.hijacked = true
	return w.c, bufio.NewReadWriter(w.br, w.bw), nil
}

// finish ends the response: the header if none was written, the last
// chunk and the trailers, then one flush. False: the stream cannot be
// reused (a write failed, or fewer bytes than Content-Length were sent).
func (w *response) finish() bool {
	if !w.wroteHeader {
		if _, ok := w.header["Content-Length"]; !ok {
			w.header.Set("Content-Length", "0") // nothing was written
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked && w.err == nil {
		w.bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			for _, v := range w.header[k] {
				writeField(w.bw, k, v)
			}
		}
		for k, vs := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vs {
					writeField(w.bw, name, v)
				}
			}
		}
		w.bw.WriteString("\r\n")
	}
	if w.flush() != nil {
		return false
	}
	return w.noBody || w.length < 0 || w.written == w.length
}

// watchStream waits for the stream to close (kas closes it when the
// caller goes away) and cancels the request then. It peeks at the read
// buffer, which nothing else reads while a request without a body runs.
func (w *response) watchStream(cancel context.CancelFunc) {
	w.watchMu.Lock()
	if w.watched != nil { // stopWatch came first
		w.watchMu.Unlock()
		return
	}
	done := make(chan struct{})
	w.watched = done
	w.watchMu.Unlock()
	defer close(done)
	// A timeout is stopWatch waking this up, not the caller leaving.
	if _, err := w.br.Peek(1); err != nil && !isTimeout(err) {
		cancel()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// stopWatch ends the watch before anything else reads the stream: a
// timer that has not fired is stopped; a running watch is woken with a
// read deadline in the past and waited for.
func (w *response) stopWatch() {
	if w.watch == nil || w.watch.Stop() {
		return
	}
	w.watchMu.Lock()
	done := w.watched
	if done == nil {
		w.watched = make(chan struct{}) // the timer's func will see it and return
	}
	w.watchMu.Unlock()
	if done == nil {
		return
	}
	_ = w.c.SetReadDeadline(time.Unix(1, 0))
	<-done
	_ = w.c.SetReadDeadline(time.Time{})
}

// requestBody is a request's body: it sends "100 Continue" when asked to
// before the first read, and notes whether it was read to its end.
type requestBody struct {
	rc     io.ReadCloser
	w      *response
	expect bool
	eof    bool
	err    error
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.expect {
		b.expect = false
		if !b.w.wroteHeader && !b.w.hijacked {
			b.w.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			b.w.flush()
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.err = err
	}
	return n, err
}

func (b *requestBody) Close() error { return nil }

// drain reads what the handler left of the body (up to maxDrain), so the
// stream can carry the next request; false if it cannot.
func (b *requestBody) drain() bool {
	if b.eof {
		return true
	}
	if b.err != nil || b.expect {
		// A failed body, or one the far end has not sent (it waits for
		// 100 Continue): the stream is in no state for another request.
		return false
	}
	n, err := io.CopyN(io.Discard, b.rc, maxDrain+1)
	return errors.Is(err, io.EOF) && n <= maxDrain
}
