package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
)

// writeBufSize fits a 32 KiB copy buffer and its chunk header, so each
// read of a streamed body leaves as one tunnel frame.
const writeBufSize = 32<<10 + 16

// BodyFrameSize is the buffer of a body whose length is known and larger
// than writeBufSize (a big list): each yamux frame, WebSocket message and
// system call carries this much instead of one 32 KiB copy buffer's
// worth, which is what costs CPU per byte on the tunnel (a frame costs
// the same hand-offs and calls whatever its size). It is held only while
// such a body is written.
const BodyFrameSize = 128 << 10

var (
	bigWriters  = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
	bodyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, BodyFrameSize) }}
)

// Serve answers the next request on a protocol-2 stream with h; br reads
// c (its next byte is RequestMagic). The handler runs on the caller's
// goroutine. A request without a body (a watch, logs -f) is cancelled
// when kas closes or resets the stream, if c can say so (PeerCloser, as
// the tunnel's streams can); on other conns it runs to its end. Serve
// returns once the answer is sent; keep says whether the stream can
// carry the next request (else the caller closes it).
//
// The ResponseWriter is an http.Flusher; after WriteHeader(101) its
// Upgraded method gives the raw stream.
func Serve(ctx context.Context, c net.Conn, br *bufio.Reader, h http.Handler) (keep bool) {
	bw := bigWriters.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() {
		bw.Reset(nil)
		bigWriters.Put(bw)
	}()
	head, err := ReadRequest(br)
	if err != nil {
		if errors.Is(err, ErrHeadTooLarge) {
			refuse(bw, http.StatusRequestHeaderFieldsTooLarge, err.Error())
		} else if errors.Is(err, ErrMalformed) {
			refuse(bw, http.StatusBadRequest, err.Error())
		}
		return false
	}
	u, err := url.ParseRequestURI(head.URI)
	if err != nil {
		refuse(bw, http.StatusBadRequest, err.Error())
		return false
	}
	// A request without a body on a stream whose context ends with the
	// stream (StreamContext) runs in that context; others get one of
	// their own, which kas's close of the stream cancels if c can say so.
	bound := head.BodyLength == 0 && !head.Upgrade && ctx.Value(streamKey{}) == c
	cancel := context.CancelFunc(func() {})
	if !bound {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	req := &http.Request{
		Method:        head.Method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        head.Header,
		Body:          http.NoBody,
		ContentLength: head.BodyLength,
		RequestURI:    head.URI,
		RemoteAddr:    c.RemoteAddr().String(),
	}
	req = req.WithContext(ctx)
	w := &ResponseWriter{c: c, br: br, bw: bw, req: req, length: -1}
	defer w.releaseBody()
	var body *Body
	if head.BodyLength != 0 {
		body = BodyReader(br, head.BodyLength)
		req.Body = body
	} else if pc, ok := c.(PeerCloser); ok && !head.Upgrade && !bound {
		// Nothing else reads the stream while a request without a body
		// runs, and kas sends nothing more on it: its close is the
		// caller going away. (No goroutine or timer per request: either
		// costs a thread wake-up per request on an idle core.)
		stop := pc.AfterPeerClose(func() {
			w.peerGone.Store(true)
			cancel()
		})
		defer stop()
	}
	h.ServeHTTP(w, req)
	if bound && ctx.Err() != nil {
		w.peerGone.Store(true) // or the server stops: the stream ends either way
	}
	if w.peerGone.Load() || !w.finish() {
		return false // kas is gone: no final chunk, the stream closes
	}
	if body != nil && !body.Done() {
		// The handler's client may still be reading the body from a
		// goroutine of its own (an answer came before the upload ended):
		// the stream is given up rather than read from here as well.
		return false
	}
	return true
}

// refuse answers a request that could not be read.
func refuse(bw *bufio.Writer, code int, msg string) {
	_ = WriteResponse(bw, &ResponseHead{Status: code, BodyLength: int64(len(msg)),
		Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}})
	bw.WriteString(msg)
	bw.Flush()
}

// ResponseWriter writes a response head frame and body on a stream.
type ResponseWriter struct {
	c   net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	req *http.Request
	// body is bw for a body of known length over writeBufSize: a
	// BodyFrameSize writer, returned to its pool when Serve returns.
	body *bufio.Writer

	header      http.Header
	wroteHeader bool
	noBody      bool
	chunked     bool
	upgraded    bool
	length      int64
	written     int64
	err         error

	peerGone atomic.Bool // kas closed the stream while the handler ran
}

// PeerCloser is a stream that runs f when its peer closes or resets it
// (tunnel/mux's Stream); stop deregisters f.
type PeerCloser interface {
	AfterPeerClose(f func()) (stop func() bool)
}

// streamKey marks a context made by StreamContext; its value is the stream.
type streamKey struct{}

// StreamContext returns ctx for every request Serve answers on c: it is
// cancelled when the peer closes or resets c or its session ends, so
// Serve runs a request without a body in it as it is, instead of making
// each request a context of its own and registering it with c (a
// cancelCtx, a registration with the parent's and one with c's, per
// request). c must be a PeerCloser whose every end runs its functions
// (a tunnel/mux stream: every stream ends with one of those), or ctx is
// returned unchanged: nothing else would cancel the context and release
// it from its parent.
func StreamContext(ctx context.Context, c net.Conn) context.Context {
	pc, ok := c.(PeerCloser)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	pc.AfterPeerClose(cancel)
	return context.WithValue(ctx, streamKey{}, c)
}

func (w *ResponseWriter) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

// AdoptHeader makes h the response's header, in place of the one Header
// returns, if nothing was set there yet and the head is not written:
// a handler relaying a response it owns (agentk's, the API server's)
// hands its header over instead of copying it entry by entry. It
// reports whether h was taken.
func (w *ResponseWriter) AdoptHeader(h http.Header) bool {
	if w.wroteHeader || len(w.header) != 0 || h == nil {
		return false
	}
	w.header = h
	return true
}

// WriteHeader sends the head. Informational answers other than 101 are
// dropped: the request's body is already on its way.
func (w *ResponseWriter) WriteHeader(code int) {
	if w.wroteHeader || (code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols) {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	w.wroteHeader = true
	h := w.header
	h.Del("Transfer-Encoding")
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusSwitchingProtocols ||
		code == http.StatusNoContent || code == http.StatusNotModified
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			h.Del("Content-Length")
		}
	}
	bodyLength := w.length
	switch {
	case w.noBody:
		bodyLength = 0
	case w.length < 0:
		w.chunked = true
	case w.length > int64(w.bw.Available()) && w.bw.Buffered() == 0:
		w.body = bodyWriters.Get().(*bufio.Writer)
		w.body.Reset(w.c)
		w.bw = w.body
	}
	w.err = WriteResponse(w.bw, &ResponseHead{Status: code, Header: h, BodyLength: bodyLength})
	if code == http.StatusSwitchingProtocols {
		w.upgraded = true
		w.flush()
	}
}

func (w *ResponseWriter) Write(p []byte) (int, error) {
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
	if w.chunked {
		w.err = WriteChunk(w.bw, p)
	} else {
		_, w.err = w.bw.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	w.written += int64(len(p))
	return len(p), nil
}

// releaseBody gives the body writer back, once nothing writes with it.
func (w *ResponseWriter) releaseBody() {
	if w.body != nil {
		w.body.Reset(nil)
		bodyWriters.Put(w.body)
		w.body = nil
	}
}

// Flush sends what is buffered.
func (w *ResponseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.flush()
}

func (w *ResponseWriter) flush() error {
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	return w.err
}

// Upgraded gives the stream after WriteHeader(101): what kas sends next
// is read from the returned reader (it holds what was read ahead), and
// written to the conn.
func (w *ResponseWriter) Upgraded() (*bufio.Reader, net.Conn, error) {
	if !w.upgraded {
		return nil, nil, errors.New("wire: Upgraded before a 101 answer")
	}
	if w.err != nil {
		return nil, nil, w.err
	}
	return w.br, w.c, nil
}

// finish ends the response: a head if none was sent, the final chunk,
// one flush. False: the stream cannot carry another request (upgraded, a
// write failed, or fewer bytes than the declared length were sent).
func (w *ResponseWriter) finish() bool {
	if w.upgraded {
		return false
	}
	if !w.wroteHeader {
		if _, ok := w.header["Content-Length"]; !ok {
			w.Header().Set("Content-Length", "0")
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked && w.err == nil {
		w.err = WriteLastChunk(w.bw)
	}
	return w.flush() == nil && (w.noBody || w.length < 0 || w.written == w.length)
}
