package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreePorts returns n distinct loopback ports that were free a moment
// ago. The listeners stay open until every port is chosen, so no port is
// handed out twice, then close for the caller's servers to bind.
// Nothing is reserved, so the ports come from below the kernel's
// ephemeral range (ip_local_port_range): a port there is never given to
// another process's outgoing connection or port-0 listener (test
// servers, clients of tests running in parallel) while the caller's
// server is starting or restarting on it. Only if that fails does it
// take ports the kernel picks.
func FreePorts(n int) ([]int, error) {
	if ports, ok := portsBelowEphemeral(n); ok {
		return ports, nil
	}
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

// lowestPort is where portsBelowEphemeral starts looking: above the
// ports well-known services use.
const lowestPort = 10000

// portsBelowEphemeral picks n free ports at random between lowestPort and
// the start of the ephemeral range.
func portsBelowEphemeral(n int) ([]int, bool) {
	hi := 32768 // Linux's default start of the range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				hi = v
			}
		}
	}
	if hi-lowestPort < 1000 {
		return nil, false
	}
	ports := make([]int, 0, n)
	seen := map[int]bool{}
	for try := 0; len(ports) < n && try < 50*n; try++ {
		p := lowestPort + rand.IntN(hi-lowestPort)
		if seen[p] {
			continue
		}
		seen[p] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		defer ln.Close()
		ports = append(ports, p)
	}
	return ports, len(ports) == n
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
