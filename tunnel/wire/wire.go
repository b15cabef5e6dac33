// Package wire is tunnel protocol 2: how kas sends a proxied HTTP request
// to agentk on a yamux stream, and how agentk answers, without HTTP/1.1
// text. One request at a time per stream; streams are pooled and reused
// (internal/streamhttp's Transport and Server carry the pool and the
// per-stream loop):
//
//	kas → agentk:  request head frame | request body
//	agentk → kas:  response head frame | response body
//
// A head frame is a magic byte, a uint32 big-endian length and the fields
// (see tunnel/PROTOCOL.md). A body is either exactly BodyLength raw bytes,
// or, when BodyLength is -1 (length unknown: watches, logs -f), chunks of
// a uvarint length and that many bytes, ended by a zero-length chunk, so
// a body cut short is told apart from a complete one. After a 101
// response to an upgrade request, the stream is a raw byte pipe both ways.
//
// kas closing its side of the stream while a request is in flight means
// the caller went away, and agentk cancels the request at the API server.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// Magic bytes of the head frames. RequestMagic is the first byte of a
// protocol-2 stream; no HTTP/1.1 request starts with it (a method is a
// token of ASCII letters), so agentk tells the two protocols apart per
// stream.
const (
	RequestMagic  byte = 0xB2
	ResponseMagic byte = 0xB3
)

// MaxHeadSize bounds a head frame (a request's or response's header), as
// net/http's DefaultMaxHeaderBytes bounds an HTTP/1.1 header.
const MaxHeadSize = 1 << 20

// Errors callers branch on.
var (
	ErrHeadTooLarge = errors.New("wire: head frame too large")
	ErrMalformed    = errors.New("wire: malformed head frame")
)

const (
	flagUpgrade = 1 << 0
	flagChunked = 1 << 1
)

// RequestHead is what precedes a request's body.
type RequestHead struct {
	Method string
	// URI is the path and query, as on an HTTP/1.1 request line.
	URI    string
	Header http.Header
	// Upgrade says the request asks for a protocol upgrade (exec, attach,
	// port-forward): after a 101 the stream is a raw pipe.
	Upgrade bool
	// BodyLength is the body's length in bytes, 0 for none, -1 when
	// unknown (the body is chunked).
	BodyLength int64
}

// ResponseHead is what precedes a response's body.
type ResponseHead struct {
	Status int
	Header http.Header
	// BodyLength as in RequestHead.
	BodyLength int64
}

// AppendRequest appends h's frame to b.
func AppendRequest(b []byte, h *RequestHead) []byte {
	var flags byte
	if h.Upgrade {
		flags |= flagUpgrade
	}
	b, start := beginFrame(b, flags, h.BodyLength)
	b = appendString(b, h.Method)
	b = appendString(b, h.URI)
	b = appendHeader(b, h.Header)
	return endFrame(b, start, RequestMagic)
}

// AppendResponse appends h's frame to b.
func AppendResponse(b []byte, h *ResponseHead) []byte {
	b, start := beginFrame(b, 0, h.BodyLength)
	b = binary.AppendUvarint(b, uint64(h.Status))
	b = appendHeader(b, h.Header)
	return endFrame(b, start, ResponseMagic)
}

// beginFrame writes the frame header (its length filled in by endFrame),
// the flags byte, and the body length unless the body is chunked.
func beginFrame(b []byte, flags byte, bodyLength int64) ([]byte, int) {
	b = append(b, 0, 0, 0, 0, 0)
	start := len(b)
	if bodyLength < 0 {
		return append(b, flags|flagChunked), start
	}
	b = append(b, flags)
	return binary.AppendUvarint(b, uint64(bodyLength)), start
}

func endFrame(b []byte, start int, magic byte) []byte {
	b[start-5] = magic
	binary.BigEndian.PutUint32(b[start-4:start], uint32(len(b)-start))
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendHeader(b []byte, h http.Header) []byte {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	b = binary.AppendUvarint(b, uint64(n))
	for k, vs := range h {
		for _, v := range vs {
			b = appendString(b, k)
			b = appendString(b, v)
		}
	}
	return b
}

// WriteRequest writes h's frame to w.
func WriteRequest(w *bufio.Writer, h *RequestHead) error {
	return writeFrame(w, func(b []byte) []byte { return AppendRequest(b, h) })
}

// WriteResponse writes h's frame to w.
func WriteResponse(w *bufio.Writer, h *ResponseHead) error {
	return writeFrame(w, func(b []byte) []byte { return AppendResponse(b, h) })
}

func writeFrame(w *bufio.Writer, appendTo func([]byte) []byte) error {
	// Encode into the writer's free space when the frame fits (it almost
	// always does), else into a buffer of its own.
	if w.Buffered() > 0 && w.Available() < 512 {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	b := appendTo(w.AvailableBuffer())
	_, err := w.Write(b)
	return err
}

// ReadRequest reads a request head frame from r.
func ReadRequest(r *bufio.Reader) (*RequestHead, error) {
	h := &RequestHead{}
	err := readFrame(r, RequestMagic, func(d *decoder, flags byte) {
		h.Upgrade = flags&flagUpgrade != 0
		h.BodyLength = d.length(flags)
		h.Method = d.string()
		h.URI = d.string()
		h.Header = d.header()
	})
	if err != nil {
		return nil, err
	}
	if !httpguts.ValidHeaderFieldName(h.Method) || !validURI(h.URI) {
		return nil, fmt.Errorf("%w: bad method or URI", ErrMalformed)
	}
	return h, nil
}

// ReadResponse reads a response head frame from r.
func ReadResponse(r *bufio.Reader) (*ResponseHead, error) {
	h := &ResponseHead{}
	var status uint64
	err := readFrame(r, ResponseMagic, func(d *decoder, flags byte) {
		h.BodyLength = d.length(flags)
		status = d.uvarint()
		h.Header = d.header()
	})
	if err != nil {
		return nil, err
	}
	if status < 100 || status > 999 {
		return nil, fmt.Errorf("%w: status %d", ErrMalformed, status)
	}
	h.Status = int(status)
	return h, nil
}

// readFrame reads one frame from r and decodes it with fields, in place
// in r's buffer when it fits (decoded strings share one copy of the frame).
func readFrame(r *bufio.Reader, magic byte, fields func(d *decoder, flags byte)) error {
	hdr, err := r.Peek(5)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if hdr[0] != magic {
		return fmt.Errorf("%w: first byte %#x, expected %#x", ErrMalformed, hdr[0], magic)
	}
	n := int(binary.BigEndian.Uint32(hdr[1:5]))
	if n > MaxHeadSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrHeadTooLarge, n, MaxHeadSize)
	}
	if n < 1 {
		return fmt.Errorf("%w: empty", ErrMalformed)
	}
	r.Discard(5)
	var buf []byte
	inPlace := n <= r.Size()
	if inPlace {
		buf, err = r.Peek(n)
	} else {
		buf = make([]byte, n)
		_, err = io.ReadFull(r, buf)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	// One copy of the frame: every string decoded from it is a piece of
	// it, not an allocation of its own.
	d := &decoder{b: buf, s: string(buf)}
	fields(d, d.byte())
	if inPlace {
		r.Discard(n)
	}
	return d.finish()
}

// decoder reads the fields of a frame; the first error sticks.
type decoder struct {
	b   []byte // what is left to decode
	s   string // the whole frame, for strings: d.b is its tail
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("short frame")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) length(flags byte) int64 {
	if flags&flagChunked != 0 {
		return -1
	}
	v := d.uvarint()
	if v > 1<<62 {
		d.fail("body length out of range")
		return 0
	}
	return int64(v)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string past the frame's end")
		return ""
	}
	off := len(d.s) - len(d.b)
	d.b = d.b[n:]
	return d.s[off : off+int(n)]
}

func (d *decoder) header() http.Header {
	n := d.uvarint()
	// Each field takes at least two bytes: a count beyond that is a lie
	// meant to make the map huge.
	if n > uint64(len(d.b))/2 {
		d.fail("header count past the frame's end")
		return nil
	}
	h := make(http.Header, min(n, 64))
	// One backing array for the values: a field seen once (nearly all)
	// takes a one-element piece of it; a repeated one grows its own.
	// Capped like the map: n is the peer's word.
	vals := make([]string, min(n, 64))
	for i := range n {
		k := d.string()
		v := d.string()
		if d.err != nil {
			return nil
		}
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			d.fail("invalid header field")
			return nil
		}
		k = http.CanonicalHeaderKey(k)
		if old, ok := h[k]; ok || i >= uint64(len(vals)) {
			h[k] = append(old, v)
		} else {
			vals[i] = v
			h[k] = vals[i : i+1 : i+1]
		}
	}
	return h
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// validURI accepts what an HTTP/1.1 request line could carry as a path
// and query: it starts with a slash and has no spaces or control bytes.
func validURI(u string) bool {
	if len(u) == 0 || u[0] != '/' {
		return false
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
