package wire

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// writesConn records what Serve writes; reads block until Close (the
// stream kas keeps open).
type writesConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	closed chan struct{}
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// count says how often piece was sent so far.
func (c *writesConn) count(piece string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Count(bytes.Join(c.writes, nil), []byte(piece))
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
	return serveURI(t, "/list", &writesConn{closed: make(chan struct{})}, h)
}

func serveURI(t *testing.T, uri string, c *writesConn, h http.HandlerFunc) (*writesConn, *ResponseHead, []byte) {
	t.Helper()
	defer c.Close()
	req := AppendRequest(nil, &RequestHead{Method: "GET", URI: uri, Header: http.Header{}})
	if !Serve(context.Background(), c, bufio.NewReader(bytes.NewReader(req)), h, time.Hour) {
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

	c, rh, got = serveURI(t, "/api/v1/pods?watch=true", &writesConn{closed: make(chan struct{})}, func(w http.ResponseWriter, _ *http.Request) {
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

// A chunked answer to a GET of a list leaves in full buffers, not a
// write per flush; a watch, a log and a proxied service keep a write per
// flush.
func TestServeChunkedListBatched(t *testing.T) {
	const pieces = 100
	h := func(w http.ResponseWriter, _ *http.Request) {
		for range pieces {
			_, _ = w.Write(bytes.Repeat([]byte("i"), 2<<10))
			w.(http.Flusher).Flush()
		}
	}
	c, rh, got := serveURI(t, "/api/v1/configmaps", &writesConn{closed: make(chan struct{})}, h)
	if rh.BodyLength != -1 || len(got) != pieces*2<<10 {
		t.Fatalf("list: length %d, %d bytes", rh.BodyLength, len(got))
	}
	if len(c.writes) > 10 {
		t.Errorf("list: %d writes for %d flushed pieces, want them batched", len(c.writes), pieces)
	}
	for _, uri := range []string{"/api/v1/configmaps?watch=true", "/api/v1/watch/configmaps",
		"/api/v1/namespaces/d/pods/p/log?follow=true", "/api/v1/namespaces/d/services/s:80/proxy/x"} {
		c, _, _ := serveURI(t, uri, &writesConn{closed: make(chan struct{})}, h)
		if len(c.writes) < pieces {
			t.Errorf("%s: %d writes for %d flushed pieces, want one each", uri, len(c.writes), pieces)
		}
	}
}

// A batched answer that pauses is still sent within BatchFlushDelay.
func TestServeChunkedListPause(t *testing.T) {
	c := &writesConn{closed: make(chan struct{})}
	gate := make(chan struct{})
	done := make(chan []byte)
	go func() {
		_, _, got := serveURI(t, "/api/v1/configmaps", c, func(w http.ResponseWriter, _ *http.Request) {
			for i := range 4 {
				if i == 3 {
					<-gate
				}
				_, _ = w.Write([]byte("0123456789"))
				w.(http.Flusher).Flush()
			}
		})
		done <- got
	}()
	start := time.Now()
	for c.count("0123456789") < 3 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the 3 pieces before the pause were not sent within 10 s (%d were)", c.count("0123456789"))
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("sent %v after the answer started", time.Since(start))
	close(gate)
	if got := <-done; len(got) != 40 {
		t.Errorf("%d bytes, want 40", len(got))
	}
}
