package httpserve

import (
	"io"
	"net"
	"sync"
)

// ConnLimits caps a listener's open connections: Max in total and
// PerSource from one IP address. Zero means no cap.
type ConnLimits struct {
	Max       int
	PerSource int
}

// LimitListener returns ln with its open connections capped. A connection
// over a cap is accepted and closed at once, rather than left in the
// kernel's backlog, so the listener keeps taking (and answering) others;
// refused, if not nil, hears of each. A connection counts until it is
// closed, after a hijack (WebSocket, upgrades) too.
//
// Per source, because one client must not use up what every client
// shares; in total, because the process's open-files limit is shared by
// every listener: a flood on one must leave room for the others.
func LimitListener(ln net.Listener, l ConnLimits, refused func()) net.Listener {
	if l.Max <= 0 && l.PerSource <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, limits: l, refused: refused, bySource: map[string]int{}}
}

type limitListener struct {
	net.Listener
	limits  ConnLimits
	refused func()

	mu       sync.Mutex // guards open and bySource
	open     int
	bySource map[string]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		if l.take(src) {
			return &limitConn{Conn: c, release: func() { l.give(src) }}, nil
		}
		c.Close()
		if l.refused != nil {
			l.refused()
		}
	}
}

func (l *limitListener) take(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.limits.Max > 0 && l.open >= l.limits.Max) || (l.limits.PerSource > 0 && l.bySource[src] >= l.limits.PerSource) {
		return false
	}
	l.open++
	l.bySource[src]++
	return true
}

func (l *limitListener) give(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
}

// Open is the number of connections the listener holds (for tests and
// metrics); 0 for a listener without caps.
func Open(ln net.Listener) int {
	l, ok := ln.(*limitListener)
	if !ok {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitConn gives its slot back on the first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite and ReadFrom pass through (closeWrite, readFrom).
func (c *limitConn) CloseWrite() error                   { return closeWrite(c.Conn) }
func (c *limitConn) ReadFrom(r io.Reader) (int64, error) { return readFrom(c.Conn, r) }
