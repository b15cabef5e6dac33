package tunnel

import (
	"net"

	"kubetunnel/tunnel/mux"
)

// sessionConn is what a session runs on: a connection that writes a
// frame's header and body together (mux.FrameWriter), wsConn or
// frameConn.
type sessionConn interface {
	net.Conn
	mux.FrameWriter
}

// frameConn is a raw TCP or TLS connection under a session: it writes
// a frame's header and body together, since each write is a system call
// (and, through TLS, a record of its own). On a plain TCP connection they
// go out in one writev, without copying the body; through TLS they are
// joined in a buffer. The mux writes only under its session's write
// lock, so no lock is needed here. (WebSocket connections do the same in
// wsConn, one message per frame.)
type frameConn struct {
	net.Conn
	// vec is set for a *net.TCPConn: net.Buffers' WriteTo is writev there.
	vec  bool
	buf  []byte
	bufs net.Buffers
}

func newFrameConn(c net.Conn) *frameConn {
	_, vec := c.(*net.TCPConn)
	return &frameConn{Conn: c, vec: vec}
}

// WriteFrame writes hdr and body as one write.
func (c *frameConn) WriteFrame(hdr, body []byte) error {
	if c.vec {
		c.bufs = append(c.bufs[:0], hdr, body)
		// WriteTo consumes c.bufs; what it leaves does not pin body.
		_, err := c.bufs.WriteTo(c.Conn)
		c.bufs = c.bufs[:0]
		return err
	}
	c.buf = append(append(c.buf[:0], hdr...), body...)
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 1<<20 {
		c.buf = nil // do not pin a big frame's buffer for the session's life
	}
	return err
}
