package tunnel

import (
	"github.com/prometheus/client_golang/prometheus"
)

// countingConn counts bytes below the multiplexer, so framing and
// keepalives count too.
type countingConn struct {
	sessionConn
	in, out prometheus.Counter
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.sessionConn.Read(p)
	if n > 0 {
		c.in.Add(float64(n))
	}
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.sessionConn.Write(p)
	if n > 0 {
		c.out.Add(float64(n))
	}
	return n, err
}

func (c *countingConn) WriteFrame(hdr, body []byte) error {
	err := c.sessionConn.WriteFrame(hdr, body)
	if err == nil {
		c.out.Add(float64(len(hdr) + len(body)))
	}
	return err
}
