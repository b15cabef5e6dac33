package streamhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"kubetunnel/tunnel/wire"
)

// Defaults for a Transport's zero fields.
const (
	DefaultMaxIdle     = 100
	DefaultIdleTimeout = 90 * time.Second
)

// bufSize is each stream's read and write buffer: a GET's request and a
// small object's response each fit in one, so each crosses the tunnel in
// one write.
const bufSize = 4 << 10

// bodyWriteGrace is how long a complete response waits for its request
// body to finish going out before the stream is given up rather than
// reused.
const bodyWriteGrace = 100 * time.Millisecond

// errConnClosed is a reused stream that the far end had closed before
// the request reached it; such a request is retried once on a new one.
var errConnClosed = errors.New("streamhttp: reused stream closed before the response")

// Transport is an http.RoundTripper that speaks HTTP/1.1 over streams
// from Dial, one request at a time per stream, and pools idle streams.
//
// Unlike http.Transport it runs no goroutine per connection: the
// caller's goroutine writes the request and reads the response, so a
// request crosses fewer goroutine hand-offs (that, not parsing, is what
// a small request spends its time on). A request body is written from a
// goroutine of its own, because the far end may answer before it has
// read the body.
type Transport struct {
	// Dial opens a new stream.
	Dial func(ctx context.Context) (net.Conn, error)
	// MaxIdle bounds the idle streams kept (DefaultMaxIdle).
	MaxIdle int
	// IdleTimeout is how long an idle stream is kept (DefaultIdleTimeout).
	IdleTimeout time.Duration

	// now tells idle streams' age; tests step a fake clock (nil: time.Now).
	now func() time.Time

	mu     sync.Mutex // guards idle and closed
	idle   []*conn    // most recently used last
	closed bool       // Close was called: nothing goes back to idle
}

func (t *Transport) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// conn is one stream with its buffers.
type conn struct {
	net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
}

func (t *Transport) maxIdle() int {
	if t.MaxIdle > 0 {
		return t.MaxIdle
	}
	return DefaultMaxIdle
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return DefaultIdleTimeout
}

// get returns the most recently used idle stream that has not timed out,
// or nil.
func (t *Transport) get() *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.idle) > 0 {
		c := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if t.clock().Sub(c.idleSince) < t.idleTimeout() && !closedByPeer(c) {
			return c
		}
		c.Close()
	}
	return nil
}

// closedByPeer reports whether the far end has already closed an idle
// stream or connection (agentk does when it stops; an API server or a
// load balancer does after its idle timeout). A request sent on it would
// be lost, and one with a body could not be sent again. On a tunnel
// stream, a read of nothing that must not wait says EOF then, and times
// out otherwise; on a socket (TCP, TLS) such a read returns at once and
// says nothing, so socketClosed peeks at the socket instead.
func closedByPeer(c *conn) bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if closed, ok := socketClosed(c.Conn); ok {
		return closed
	}
	if c.SetReadDeadline(aLongTimeAgo) != nil {
		return false
	}
	_, err := c.Read(nil)
	if c.SetReadDeadline(time.Time{}) != nil {
		return true
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return false // the usual answer (tunnel/mux's), without errors.As's reflection
	}
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

func (t *Transport) put(c *conn) {
	c.idleSince = t.clock()
	t.mu.Lock()
	if !t.closed && len(t.idle) < t.maxIdle() {
		t.idle = append(t.idle, c)
		c = nil
	}
	t.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// CloseIdleConnections closes every idle stream.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// Close closes every idle stream, and every stream a response in
// progress hands back after: for a pool whose far end is gone (kas's
// pool of a tunnel session that ended). CloseIdleConnections would leave
// such a stream idle, open as far as its owner can tell, until the pool
// itself was dropped. Requests already sent finish; new ones still dial.
func (t *Transport) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

// IdleConns is the number of idle streams in the pool.
func (t *Transport) IdleConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// RoundTrip sends req on an idle or new stream and returns the response
// once its header has arrived. Closing (or reading to the end) the
// response body frees the stream; a 101 response's body is the stream
// itself (an io.ReadWriteCloser, as from http.Transport), for upgrades.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.roundTrip(req, http1)
}

// RoundTripWire is RoundTrip in tunnel protocol 2: binary head frames
// (tunnel/wire) instead of HTTP/1.1 text, on the same pool of streams.
// Only peers that speak it (agentk that offered protocol 2) may get it.
func (t *Transport) RoundTripWire(req *http.Request) (*http.Response, error) {
	return t.roundTrip(req, wireCodec)
}

// codec is how requests and responses are written on a stream.
type codec struct {
	write func(bw *bufio.Writer, req *http.Request) error
	read  func(ctx context.Context, br *bufio.Reader, req *http.Request) (*http.Response, error)
}

var (
	http1     = &codec{write: writeRequest, read: readResponse}
	wireCodec = &codec{write: wire.WriteHTTPRequest, read: func(_ context.Context, br *bufio.Reader, req *http.Request) (*http.Response, error) {
		return wire.ReadHTTPResponse(br, req)
	}}
)

func (t *Transport) roundTrip(req *http.Request, cd *codec) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("streamhttp: request without a URL")
	}
	ctx := req.Context()
	if c := t.get(); c != nil {
		resp, err := t.exchange(ctx, c, req, true, cd)
		if !errors.Is(err, errConnClosed) {
			return resp, err
		}
	}
	nc, err := t.Dial(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	return t.exchange(ctx, &conn{Conn: nc, br: bufio.NewReaderSize(nc, bufSize), bw: bufio.NewWriterSize(nc, bufSize)}, req, false, cd)
}

// hasBody says whether req has a body to send.
func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody
}

// idempotent is http.Transport's rule for requests it may send again
// after a reused connection closed without answering: the far end may
// have acted on it already, so only methods that can be repeated.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// exchange writes req on c and reads the response header. On an error c
// is closed. errConnClosed (only for a reused stream, and a request
// without a body) means the request may be sent again on a new stream:
// the write failed, or an idempotent request got no byte of an answer.
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request, reused bool, cd *codec) (*http.Response, error) {
	// A cancelled request closes its stream: that unblocks a read or a
	// write here and tells the far end to stop.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	var wrote chan error // the body writer's result
	if !hasBody(req) {
		if err := cd.write(c.bw, req); err != nil {
			if reused {
				err = fmt.Errorf("%w: %v", errConnClosed, err)
			}
			return fail(err)
		}
	} else {
		wrote = make(chan error, 1)
		go func() { wrote <- cd.write(c.bw, req) }()
	}
	// Peek first: an error before the first byte is a stream that was
	// dead before the request, which an idempotent request may retry
	// (ReadResponse would call it ErrUnexpectedEOF, like a cut answer).
	_, err := c.br.Peek(1)
	if err != nil && wrote == nil && reused && idempotent(req) && ctx.Err() == nil {
		return fail(fmt.Errorf("%w: %v", errConnClosed, err))
	}
	var resp *http.Response
	if err == nil {
		resp, err = cd.read(ctx, c.br, req)
	}
	if err != nil {
		if wrote != nil {
			c.Close()
			<-wrote
		}
		return fail(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The stream now belongs to the upgraded protocol; a cancelled
		// request still closes it.
		resp.Body = &upgraded{Reader: c.br, conn: c, stop: stop}
		return resp, nil
	}
	b := &body{rc: resp.Body, c: c, t: t, stop: stop, wrote: wrote,
		reuse: !resp.Close && !req.Close, length: resp.ContentLength}
	if resp.Body == http.NoBody {
		b.finish(true)
	} else {
		resp.Body = b
	}
	return resp, nil
}

// writeRequest writes req and flushes it.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	if !writePlainRequest(bw, req) {
		if err := req.Write(bw); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writePlainRequest writes a GET or HEAD without a body, trailer, close
// or client trace (what agentk sends but uploads and upgrades) as
// Request.Write would, without its formatting and header sorting (a few
// percent of agentk's CPU per GET); false: it wrote nothing, the request
// is not one of those (or its host or URI needs Request.Write's
// checks).
func writePlainRequest(bw *bufio.Writer, req *http.Request) bool {
	if hasBody(req) || req.Close || req.Trailer != nil || len(req.TransferEncoding) != 0 ||
		(req.Method != "" && req.Method != http.MethodGet && req.Method != http.MethodHead) ||
		httptrace.ContextClientTrace(req.Context()) != nil {
		return false
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	ruri := req.URL.RequestURI()
	if !plainASCII(host) || strings.IndexByte(host, '%') >= 0 || !httpguts.ValidHostHeader(host) || !plainASCII(ruri) {
		return false
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(ruri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	// Request.Write's rule: the default unless the header has one, which
	// may be empty to send none.
	ua := "Go-http-client/1.1"
	if vs, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(vs) > 0 {
			ua = vs[0]
		}
	}
	if ua != "" {
		writeField(bw, "User-Agent", ua)
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue // Request.Write's own (reqWriteExcludeHeader)
		}
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
	return true
}

// plainASCII says s has only printable ASCII (no control byte, space or
// DEL): a host or request URI Request.Write would send unchanged.
func plainASCII(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// readResponse reads the final response, passing informational (1xx
// other than 101) responses to the request's httptrace, as http.Transport
// does: ReverseProxy relays them to its caller that way.
func readResponse(ctx context.Context, br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if resp, ok := readPlainResponse(br, req); ok {
		return resp, nil
	}
	trace := httptrace.ContextClientTrace(ctx)
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		code := resp.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// body is a response body; at its end the stream goes back to the pool.
type body struct {
	rc    io.ReadCloser
	c     *conn
	t     *Transport
	stop  func() bool
	wrote chan error // nil when there was no request body
	reuse bool
	// length is the Content-Length (-1 unknown); read counts up to it,
	// so a caller that stops after the last byte still frees the stream.
	// Close may come from another goroutine than Read (kas ending a
	// watch), hence atomic.
	length int64
	read   atomic.Int64

	mu   sync.Mutex // guards done
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.read.Add(int64(n))
	if err == io.EOF {
		b.finish(true)
	}
	return n, err
}

// Close before the end of the body closes the stream: what is left of
// the response is not worth reading, and closing it cancels the request
// at the far end (a watch, logs -f).
func (b *body) Close() error {
	b.finish(b.length >= 0 && b.read.Load() == b.length)
	return nil
}

func (b *body) finish(atEOF bool) {
	b.mu.Lock()
	done := b.done
	b.done = true
	b.mu.Unlock()
	if done {
		return
	}
	// stop false: the request was cancelled and the stream is closing.
	reuse := b.stop() && atEOF && b.reuse
	if b.wrote != nil && reuse {
		// The far end answered in full; normally it read the whole body
		// first, and the writer is about to report. One that answered
		// early (a refusal) may never read the rest: give up the stream.
		t := time.NewTimer(bodyWriteGrace)
		select {
		case err := <-b.wrote:
			b.wrote = nil
			reuse = err == nil
		case <-t.C:
			reuse = false
		}
		t.Stop()
	}
	if b.wrote != nil {
		b.c.Close() // unblocks a body write still in progress
		<-b.wrote
	}
	if reuse {
		b.t.put(b.c)
	} else {
		b.c.Close()
	}
}

// upgraded is a 101 response's body: the stream, read through the
// buffer that may hold the upgraded protocol's first bytes.
type upgraded struct {
	io.Reader
	conn *conn
	stop func() bool
}

func (u *upgraded) Write(p []byte) (int, error) { return u.conn.Write(p) }

func (u *upgraded) Close() error {
	u.stop()
	return u.conn.Close()
}
