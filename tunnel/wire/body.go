package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// MaxChunkSize bounds one chunk of a chunked body. Writers send at most
// what one read gave them (32 KiB for a proxy's copy buffer).
const MaxChunkSize = 1 << 20

// ErrTruncated is a body that ended before its declared length or its
// final chunk: the far end failed mid-body.
var ErrTruncated = errors.New("wire: body cut short")

// WriteChunk writes one chunk of a chunked body; an empty p writes
// nothing (the final chunk is WriteLastChunk's).
func WriteChunk(w *bufio.Writer, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), MaxChunkSize)
		var hdr [binary.MaxVarintLen64]byte
		if _, err := w.Write(hdr[:binary.PutUvarint(hdr[:], uint64(n))]); err != nil {
			return err
		}
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// WriteLastChunk ends a chunked body.
func WriteLastChunk(w *bufio.Writer) error { return w.WriteByte(0) }

// BodyReader reads a body of length n (-1: chunked) from r. It returns
// io.EOF at the body's end, and ErrTruncated (wrapping what the stream
// said) when the stream ends first.
func BodyReader(r *bufio.Reader, n int64) *Body {
	return &Body{r: r, left: n, chunked: n < 0}
}

// Body is a request or response body on a stream.
type Body struct {
	r       *bufio.Reader
	left    int64 // in the body (fixed) or the current chunk (chunked)
	chunked bool
	// eof is set by the reader and read by the stream's owner, which may
	// be another goroutine (Done).
	eof atomic.Bool
	err error
}

// Read reads the body; it never reads past the body's end.
func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.eof.Load() {
		return 0, io.EOF
	}
	if b.chunked && b.left <= 0 {
		n, err := binary.ReadUvarint(b.r)
		if err != nil {
			return 0, b.fail(err)
		}
		if n > MaxChunkSize {
			b.err = fmt.Errorf("%w: chunk of %d bytes, at most %d", ErrMalformed, n, MaxChunkSize)
			return 0, b.err
		}
		if n == 0 {
			b.eof.Store(true)
			return 0, io.EOF
		}
		b.left = int64(n)
	}
	if !b.chunked && b.left == 0 {
		b.eof.Store(true)
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err != nil {
		if n > 0 {
			return n, nil // the error comes again on the next read
		}
		return 0, b.fail(err)
	}
	if !b.chunked && b.left == 0 {
		b.eof.Store(true)
		return n, io.EOF
	}
	return n, nil
}

func (b *Body) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	b.err = fmt.Errorf("%w: %w", ErrTruncated, err)
	return b.err
}

// Close does nothing: the stream's owner closes it.
func (b *Body) Close() error { return nil }

// Done reports whether the body was read to its end.
func (b *Body) Done() bool { return b.eof.Load() }
