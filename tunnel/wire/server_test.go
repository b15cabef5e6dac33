package wire

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// writesConn records what Serve writes; reads block until Close (the
// stream kas keeps open).
type writesConn struct {
	net.Conn
	writes [][]byte
	closed chan struct{}
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}
func (c *writesConn) Read([]byte) (int, error)         { <-c.closed; return 0, io.EOF }
func (c *writesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *writesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *writesConn) Close() error                     { close(c.closed); return nil }
func (c *writesConn) SetWriteDeadline(time.Time) error { return nil }

// serveOnce answers one GET with h on a recording stream and reads the
// answer back.
func serveOnce(t *testing.T, h http.HandlerFunc) (*writesConn, *ResponseHead, []byte) {
	t.Helper()
	c := &writesConn{closed: make(chan struct{})}
	defer c.Close()
	req := AppendRequest(nil, &RequestHead{Method: "GET", URI: "/list", Header: http.Header{}})
	if !Serve(context.Background(), c, bufio.NewReader(bytes.NewReader(req)), h) {
		t.Fatal("Serve: the stream cannot be reused after a complete answer")
	}
	br := bufio.NewReader(bytes.NewReader(bytes.Join(c.writes, nil)))
	rh, err := ReadResponse(br)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(BodyReader(br, rh.BodyLength))
	if err != nil {
		t.Fatal(err)
	}
	return c, rh, body
}

// A large body of known length leaves in BodyFrameSize writes (tunnel
// frames), however small the handler's writes; a small answer, and a
// chunked one, leave as before.
func TestServeBodyFrames(t *testing.T) {
	const size = 1 << 20
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	c, rh, got := serveOnce(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for p := body; len(p) > 0; p = p[min(len(p), 32<<10):] {
			if _, err := w.Write(p[:min(len(p), 32<<10)]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	if rh.BodyLength != size || !bytes.Equal(got, body) {
		t.Fatalf("body: %d bytes (length %d), want the %d written", len(got), rh.BodyLength, size)
	}
	if n := len(c.writes); n != size/BodyFrameSize+1 {
		t.Errorf("%d writes for a 1 MiB body, want %d of %d bytes", n, size/BodyFrameSize+1, BodyFrameSize)
	}
	for _, wr := range c.writes[:len(c.writes)-1] {
		if len(wr) != BodyFrameSize {
			t.Errorf("a write of %d bytes, want %d", len(wr), BodyFrameSize)
		}
	}

	c, _, got = serveOnce(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("small")) })
	if len(c.writes) != 1 || string(got) != "small" {
		t.Errorf("small answer: %d writes, body %q; want one write of the head and body", len(c.writes), got)
	}

	c, rh, got = serveOnce(t, func(w http.ResponseWriter, _ *http.Request) {
		for range 3 {
			_, _ = w.Write(bytes.Repeat([]byte("e"), 40<<10))
			w.(http.Flusher).Flush()
		}
	})
	if rh.BodyLength != -1 || len(got) != 3*40<<10 {
		t.Fatalf("streamed answer: length %d, %d bytes", rh.BodyLength, len(got))
	}
	for _, wr := range c.writes {
		if len(wr) > writeBufSize {
			t.Errorf("streamed answer: a write of %d bytes, more than the %d of a streamed body's buffer", len(wr), writeBufSize)
		}
	}
}

// AdoptHeader takes a handler's header map only while the answer's is
// untouched: what the handler set first is not dropped.
func TestAdoptHeader(t *testing.T) {
	_, rh, _ := serveOnce(t, func(w http.ResponseWriter, _ *http.Request) {
		if !w.(*ResponseWriter).AdoptHeader(http.Header{"Content-Type": {"application/json"}, "Content-Length": {"2"}}) {
			t.Error("AdoptHeader declined an untouched header")
		}
		w.Write([]byte("{}"))
	})
	if rh.Header.Get("Content-Type") != "application/json" {
		t.Errorf("adopted header not sent: %v", rh.Header)
	}
	_, rh, _ = serveOnce(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Set-First", "1")
		if w.(*ResponseWriter).AdoptHeader(http.Header{"Content-Type": {"text/plain"}}) {
			t.Error("AdoptHeader replaced a header the handler had set")
		}
	})
	if rh.Header.Get("X-Set-First") != "1" || rh.Header.Get("Content-Type") != "" {
		t.Errorf("header %v, want the handler's own", rh.Header)
	}
}
