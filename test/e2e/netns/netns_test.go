//go:build linux

package netns_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"kubetunnel/test/e2e/netns"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A listener in the namespace is reachable from here at the namespace's
// IP, the connection comes from the host end of the veth pair, and Close
// leaves nothing behind.
func TestListenInNamespace(t *testing.T) {
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	n, err := netns.Create(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			n.Close()
		}
	}()
	ln, err := n.Listen("0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "hello %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
		c.Close()
	}()
	defer wg.Wait()
	defer ln.Close()
	if got := ln.Addr().(*net.TCPAddr).IP; !got.Equal(n.IP) {
		t.Fatalf("listening on %v, want %v", got, n.IP)
	}
	if n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() {
		t.Fatalf("%v is an address the API server refuses", n.IP)
	}

	// No thread of this process stayed in the namespace: every thread a
	// goroutine can land on still sees this process's network.
	var mu sync.Mutex
	var strays []string
	var tw sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		tw.Add(1)
		go func() {
			defer tw.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if ns, _ := os.Readlink("/proc/thread-self/ns/net"); ns != hostNS {
				mu.Lock()
				strays = append(strays, ns)
				mu.Unlock()
			}
		}()
	}
	tw.Wait()
	if len(strays) > 0 {
		t.Errorf("threads in another namespace after Listen: %v", strays)
	}

	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if want := fmt.Sprintf("hello %s\n", n.HostIP); err != nil || line != want {
		t.Errorf("got %q %v, want %q", line, err, want)
	}

	closed = true
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/var/run/netns/" + n.Name); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there: %v", n.Name, err)
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			addrs, _ := i.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(n.HostIP) {
					t.Errorf("%s still has %v after Close", i.Name, n.HostIP)
				}
			}
		}
	}
}

// A namespace left by a run that was killed (its process is gone) is
// removed by the next Create; one of a live process is left alone.
func TestCreateRemovesStale(t *testing.T) {
	dead := 1 << 22 // the kernel's pid limit: never a live process
	stale := fmt.Sprintf("kubetunnel-e2e-%d-0000", dead)
	live := fmt.Sprintf("kubetunnel-e2e-%d-0000", os.Getpid())
	for _, name := range []string{stale, live} {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v %s", name, err, out)
		}
	}
	defer exec.Command("ip", "netns", "del", live).Run()
	defer exec.Command("ip", "netns", "del", stale).Run()
	n, err := netns.Create(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/var/run/netns/" + stale); !os.IsNotExist(err) {
		t.Errorf("stale namespace %s not removed: %v", stale, err)
	}
	if _, err := os.Stat("/var/run/netns/" + live); err != nil {
		t.Errorf("namespace %s of this live process was removed: %v", live, err)
	}
}
