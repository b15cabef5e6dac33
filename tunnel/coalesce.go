package tunnel

import (
	"encoding/binary"
	"net"
)

// yamux frame header: version(1) type(1) flags(2) stream(4) length(4).
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

// frameCoalescer joins each yamux data-frame header with the body written
// right after it, for raw TCP and TLS connections. The mux writes them
// separately, and each write would be a system call (and a TLS record), so
// one frame would cost two of each. The bytes on the wire are
// the same, in the same order: a held header is only delayed until the
// next Write. The mux writes a frame's header and body one after the
// other under its session's write lock, so no lock is needed here.
// (WebSocket connections do the same in wsConn, one message per frame.)
//
// On a plain TCP connection the header and body go out in one writev,
// without copying the body; through TLS they are joined in a buffer,
// since tls.Conn would make each part a record of its own.
type frameCoalescer struct {
	net.Conn
	buf  []byte
	held bool
	// vec is set for a *net.TCPConn: net.Buffers' WriteTo is writev there.
	vec  bool
	hdr  [yamuxHeaderSize]byte
	bufs net.Buffers
}

func newFrameCoalescer(c net.Conn) *frameCoalescer {
	_, vec := c.(*net.TCPConn)
	return &frameCoalescer{Conn: c, vec: vec}
}

func (c *frameCoalescer) Write(p []byte) (int, error) {
	if !c.held && len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(c.hdr[:], p)
		c.held = true
		return len(p), nil
	}
	if !c.held {
		return c.Conn.Write(p)
	}
	c.held = false
	if c.vec {
		c.bufs = append(c.bufs[:0], c.hdr[:], p)
		// WriteTo consumes c.bufs; what it leaves does not pin p.
		_, err := c.bufs.WriteTo(c.Conn)
		c.bufs = c.bufs[:0]
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.buf = append(append(c.buf[:0], c.hdr[:]...), p...)
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 1<<20 {
		c.buf = nil // do not pin a big frame's buffer for the session's life
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}
