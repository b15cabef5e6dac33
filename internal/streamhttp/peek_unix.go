//go:build unix

package streamhttp

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// socketClosed tells, for a connection on a socket (TCP, or TLS over
// TCP), whether an idle connection can no longer take a request: a peek
// that does not wait finds the far end's FIN (0 bytes) or bytes that an
// idle HTTP/1.1 connection should not get (a TLS close_notify, an early
// 408). ok is false for connections that are not on a socket (a tunnel
// stream), which closedByPeer checks another way: reading nothing from a
// socket, or from a TLS connection, returns at once and says nothing.
func socketClosed(nc net.Conn) (closed, ok bool) {
	if tc, isTLS := nc.(*tls.Conn); isTLS {
		nc = tc.NetConn()
	}
	sc, isSocket := nc.(syscall.Conn)
	if !isSocket {
		return false, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var (
		buf  [1]byte
		rerr error
	)
	if err := raw.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return true, true // closed here already
	}
	if errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK) || errors.Is(rerr, syscall.EINTR) {
		return false, true
	}
	return true, true
}
