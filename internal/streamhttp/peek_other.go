//go:build !unix

package streamhttp

import "net"

// socketClosed cannot peek here; closedByPeer falls back to its read of
// nothing.
func socketClosed(net.Conn) (closed, ok bool) { return false, false }
