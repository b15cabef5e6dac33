package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// smallSize is the body of the small GET: about what
// `kubectl get namespace default -o json` returns.
const smallSize = 700

// chunk is what the backends write from: one shared buffer, so serving a
// GiB costs no allocation and no generation time.
var chunk = func() []byte {
	b := make([]byte, 256<<10)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

// writeN writes n bytes of chunk to w.
func writeN(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// backend is the HTTP server behind every HTTP path: GET /bytes?n=N
// answers N bytes with a Content-Length, as kube-apiserver answers a GET
// or a list.
type backend struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

func startBackend() (*backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "n: want a byte count", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		_ = writeN(w, n)
	})
	b := &backend{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		_ = b.srv.Serve(ln)
	}()
	return b, nil
}

func (b *backend) stop() error {
	err := b.srv.Close()
	<-b.done
	return err
}

// byteServer is the backend of the rungs below HTTP (raw TCP, WebSocket,
// yamux): the request is an 8-byte big-endian count, the answer that many
// bytes, repeated on the same connection.
func serveBytes(c net.Conn) {
	defer c.Close()
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		if err := writeN(c, int64(binary.BigEndian.Uint64(hdr[:]))); err != nil {
			return
		}
	}
}

// byteListener accepts connections on ln and serves the byte protocol on
// each until ln is closed.
type byteListener struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func serveByteListener(ln net.Listener) *byteListener {
	s := &byteListener{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() {
				serveBytes(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			})
		}
	})
	return s
}

func (s *byteListener) stop() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// connPool is the client of the byte protocol: it reuses connections
// (or streams) as an HTTP client reuses keep-alive connections.
type connPool struct {
	dial func(ctx context.Context) (net.Conn, error)

	mu   sync.Mutex
	idle []net.Conn
	open map[net.Conn]struct{}
}

func newConnPool(dial func(ctx context.Context) (net.Conn, error)) *connPool {
	return &connPool{dial: dial, open: map[net.Conn]struct{}{}}
}

// get asks for n bytes on an idle or new connection.
func (p *connPool) get(ctx context.Context, n int64) (io.ReadCloser, error) {
	p.mu.Lock()
	var c net.Conn
	if k := len(p.idle); k > 0 {
		c, p.idle = p.idle[k-1], p.idle[:k-1]
	}
	p.mu.Unlock()
	if c == nil {
		var err error
		if c, err = p.dial(ctx); err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.open[c] = struct{}{}
		p.mu.Unlock()
	}
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := c.Write(hdr[:]); err != nil {
		p.discard(c)
		return nil, fmt.Errorf("byte request: %w", err)
	}
	body := &pooledBody{c: c, left: n, pool: p}
	body.stop = context.AfterFunc(ctx, func() { c.Close() })
	return body, nil
}

func (p *connPool) discard(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
}

func (p *connPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.open {
		c.Close()
	}
	p.open = map[net.Conn]struct{}{}
	p.idle = nil
	return nil
}

// pooledBody reads one answer; Close returns the connection to the pool
// when the answer was read to the end, and closes it otherwise.
type pooledBody struct {
	c    net.Conn
	left int64
	pool *connPool
	stop func() bool
}

func (b *pooledBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.c.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if !b.stop() || b.left != 0 {
		b.pool.discard(b.c)
		return nil
	}
	b.pool.mu.Lock()
	b.pool.idle = append(b.pool.idle, b.c)
	b.pool.mu.Unlock()
	return nil
}
