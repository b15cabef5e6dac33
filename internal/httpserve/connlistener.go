package httpserve

import (
	"context"
	"io"
	"net"
	"sync"
)

// ConnListener is a net.Listener whose connections are handed to it
// (Give) instead of accepted from a socket: a server runs on
// connections something else accepted (kas's gRPC server on agents'
// streams, net/http on what ServeFast hands over).
type ConnListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

var _ net.Listener = (*ConnListener)(nil)

// NewConnListener returns a ConnListener whose Addr is addr.
func NewConnListener(addr net.Addr) *ConnListener {
	return &ConnListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// Give passes c to the server's Accept, or closes c if the listener is
// closed or ctx ends first.
func (l *ConnListener) Give(ctx context.Context, c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	case <-ctx.Done():
		c.Close()
	}
}

func (l *ConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *ConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *ConnListener) Addr() net.Addr { return l.addr }

// closeWrite half-closes c if it can: net/http does before closing a
// connection it refused (431, 400), so that the client reads the answer
// rather than a reset.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// readFrom copies r to c with c's own ReadFrom when it has one, keeping
// sendfile/splice for a wrapped *net.TCPConn.
func readFrom(c net.Conn, r io.Reader) (int64, error) {
	if rf, ok := c.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c}, r)
}
