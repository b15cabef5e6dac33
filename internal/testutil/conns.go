package testutil

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// DialFrom opens n TCP connections to addr from the loopback address src
// (127.0.0.2 and up are other "clients" to a per-source limit) and closes
// them when the test ends; a dial that fails ends the test.
func DialFrom(t testing.TB, src, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s from %s: %v", addr, src, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// CountOpen reports how many of conns the far end keeps open: a closed
// one reads EOF (or a reset) within wait, an open one times out. It reads
// a byte from each, so use it on connections that expect no data.
func CountOpen(conns []net.Conn, wait time.Duration) int {
	open := 0
	deadline := time.Now().Add(wait)
	for _, c := range conns {
		// A deadline in the past times out even with an EOF waiting.
		c.SetReadDeadline(latest(deadline, time.Now().Add(50*time.Millisecond)))
		_, err := c.Read(make([]byte, 1))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	return open
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
