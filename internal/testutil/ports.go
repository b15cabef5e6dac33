package testutil

import (
	"fmt"
	"net"
	"strconv"
	"testing"
)

// FreePorts returns n distinct loopback ports that were free a moment
// ago. The listeners stay open until every port is chosen, so the kernel
// does not hand out one port twice, then close for the caller's servers
// to bind. Nothing is reserved: another process may take a port first.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreeAddrs is FreePorts as 127.0.0.1:port addresses.
func FreeAddrs(n int) ([]string, error) {
	ports, err := FreePorts(n)
	if err != nil {
		return nil, err
	}
	addrs := make([]string, n)
	for i, p := range ports {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return addrs, nil
}

// FreeAddr is one free loopback address; an error ends the test.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addrs, err := FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	return addrs[0]
}
