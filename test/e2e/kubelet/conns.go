package kubelet

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
)

// trackingListener remembers every accepted connection. http.Server.Close
// forgets connections once a handler hijacks them, which exec, attach and
// port-forward all do for SPDY, so Close needs its own list to end them.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newTrackingListener(l net.Listener) *trackingListener {
	return &trackingListener{Listener: l, conns: make(map[net.Conn]struct{})}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeAll closes every connection still open and any accepted later.
func (l *trackingListener) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.(*trackedConn).Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once

	mu     sync.Mutex
	closed bool
	cancel context.CancelFunc // set by connContext
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.mu.Lock()
		c.closed = true
		if c.cancel != nil {
			c.cancel()
		}
		c.mu.Unlock()
	})
	return c.Conn.Close()
}

// connContext is http.Server.ConnContext: it gives each connection a
// context that ends when the connection is closed. net/http stops watching
// a connection once a handler hijacks it, so without this an exec'd command
// that prints nothing would run on after its client left; the SPDY layer
// does close the connection when the client goes away.
func connContext(ctx context.Context, c net.Conn) context.Context {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ctx
	}
	tracked, ok := tc.NetConn().(*trackedConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	tracked.mu.Lock()
	defer tracked.mu.Unlock()
	// Close may already have run, from Kubelet.Close on another goroutine.
	if tracked.closed {
		cancel()
	}
	tracked.cancel = cancel
	return ctx
}
