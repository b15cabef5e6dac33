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
// right after it, for raw TCP and TLS connections. yamux writes them
// separately, and each write would be a system call (and a TLS record), so
// one frame would cost two of each. The bytes on the wire are
// the same, in the same order: a held header is only delayed until the
// next Write. Only yamux's send loop writes, so no lock is needed.
// (WebSocket connections do the same in wsConn, one message per frame.)
type frameCoalescer struct {
	net.Conn
	buf  []byte
	held bool
}

func (c *frameCoalescer) Write(p []byte) (int, error) {
	if !c.held && len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		c.buf = append(c.buf[:0], p...)
		c.held = true
		return len(p), nil
	}
	if !c.held {
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	c.held = false
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 1<<20 {
		c.buf = nil // do not pin a big frame's buffer for the session's life
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}
