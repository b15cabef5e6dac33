// Package tcplb is a small TCP load balancer for tests, standing in for
// the one in front of several kas replicas: each new connection goes to
// the next backend round-robin, and to the one after when a backend
// refuses the connection (as a cloud load balancer retries a pod that
// stopped listening). Bytes are copied as they are; TLS passes through.
package tcplb

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LB is a running load balancer.
type LB struct {
	ln net.Listener
	// Refused counts backend dials that failed (and were retried).
	Refused atomic.Int64

	mu       sync.Mutex // guards backends, conns and closed
	backends []string
	conns    map[net.Conn]struct{}
	closed   bool
	next     atomic.Uint64
	wg       sync.WaitGroup
}

// New listens on a free loopback port and forwards to backends
// (host:port).
func New(backends ...string) (*LB, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	lb := &LB{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	lb.wg.Add(1)
	go lb.serve()
	return lb, nil
}

// Addr is the address clients dial.
func (lb *LB) Addr() string { return lb.ln.Addr().String() }

// SetBackends replaces the backends for new connections.
func (lb *LB) SetBackends(backends ...string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.backends = backends
}

// Close stops accepting, closes every connection and waits for them.
func (lb *LB) Close() error {
	lb.mu.Lock()
	lb.closed = true
	for c := range lb.conns {
		c.Close()
	}
	lb.mu.Unlock()
	err := lb.ln.Close()
	lb.wg.Wait()
	return err
}

func (lb *LB) track(c net.Conn) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		c.Close()
		return false
	}
	lb.conns[c] = struct{}{}
	return true
}

func (lb *LB) untrack(c net.Conn) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	delete(lb.conns, c)
}

func (lb *LB) serve() {
	defer lb.wg.Done()
	for {
		c, err := lb.ln.Accept()
		if err != nil {
			return
		}
		if !lb.track(c) {
			continue
		}
		lb.wg.Add(1)
		go func() {
			defer lb.wg.Done()
			defer lb.untrack(c)
			lb.handle(c)
		}()
	}
}

// dial tries each backend once, starting at the next in turn.
func (lb *LB) dial() (net.Conn, error) {
	lb.mu.Lock()
	backends := append([]string(nil), lb.backends...)
	lb.mu.Unlock()
	if len(backends) == 0 {
		return nil, errors.New("tcplb: no backends")
	}
	start := int(lb.next.Add(1) % uint64(len(backends)))
	var err error
	for i := range backends {
		var c net.Conn
		c, err = net.DialTimeout("tcp", backends[(start+i)%len(backends)], 2*time.Second)
		if err == nil {
			return c, nil
		}
		lb.Refused.Add(1)
	}
	return nil, err
}

func (lb *LB) handle(c net.Conn) {
	defer c.Close()
	b, err := lb.dial()
	if err != nil {
		return
	}
	if !lb.track(b) {
		return
	}
	defer lb.untrack(b)
	defer b.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Pass the half-close on, as a TCP proxy does.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done
	<-done
}
