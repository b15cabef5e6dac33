package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// namePrefix starts every namespace's name; the creating process's id
// follows, so a later run can remove what a killed run left behind.
const namePrefix = "kubetunnel-e2e-"

// runDir is where `ip netns` keeps its namespaces.
const runDir = "/var/run/netns"

// Create makes a namespace with a unique name, a veth pair into it and a
// /30 from 10.100.0.0/14 (clear of the test API server's service range
// 10.0.0.0/24), picked at random and checked against the machine's routes,
// so parallel runs do not clash. Close removes it all.
func Create(ctx context.Context) (*Namespace, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, ErrNoIP
	}
	removeStale(ctx)
	id := randomHex(3)
	n := &Namespace{
		Name:     fmt.Sprintf("%s%d-%s", namePrefix, os.Getpid(), id),
		hostLink: "ktv" + id + "h",
	}
	hostIP, nsIP, err := freeSubnet(ctx)
	if err != nil {
		return nil, err
	}
	n.HostIP, n.IP = hostIP, nsIP
	nsLink := "ktv" + id + "n"
	steps := [][]string{
		{"netns", "add", n.Name},
		// The peer is born inside the namespace: no moment with both ends here.
		{"link", "add", n.hostLink, "type", "veth", "peer", "name", nsLink, "netns", n.Name},
		{"addr", "add", hostIP.String() + "/30", "dev", n.hostLink},
		{"link", "set", n.hostLink, "up"},
		{"-n", n.Name, "addr", "add", nsIP.String() + "/30", "dev", nsLink},
		{"-n", n.Name, "link", "set", nsLink, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
	}
	for _, args := range steps {
		if err := ip(ctx, args...); err != nil {
			return nil, errors.Join(err, n.Close())
		}
	}
	return n, nil
}

// Listen opens a TCP listener on the namespace's IP and port ("0" for
// any). The socket lives in the namespace however it is used afterwards:
// only its creation has to happen there.
func (n *Namespace) Listen(port string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	res := make(chan result, 1)
	go func() {
		// This thread joins the namespace and is never unlocked, so Go
		// ends the thread with the goroutine instead of reusing it for
		// other goroutines that expect this process's network.
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join(runDir, n.Name))
		if err != nil {
			res <- result{err: fmt.Errorf("open namespace %s: %w", n.Name, err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- result{err: fmt.Errorf("enter namespace %s: %w", n.Name, err)}
			return
		}
		ln, err := net.Listen("tcp4", net.JoinHostPort(n.IP.String(), port))
		res <- result{ln, err}
	}()
	r := <-res
	return r.ln, r.err
}

// Close deletes the veth pair and the namespace. The pair goes first:
// the kernel removes the devices of a deleted namespace only later, in
// the background.
func (n *Namespace) Close() error {
	ctx := context.Background()
	var errs []error
	if err := ip(ctx, "link", "del", n.hostLink); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		errs = append(errs, err)
	}
	if err := ip(ctx, "netns", "del", n.Name); err != nil && !strings.Contains(err.Error(), "No such file") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeStale deletes namespaces left by runs whose process is gone
// (killed by a timeout, say). Deleting a namespace deletes the veth pair
// with it.
func removeStale(ctx context.Context) {
	entries, _ := os.ReadDir(runDir)
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		_ = ip(ctx, "netns", "del", e.Name())
	}
}

// freeSubnet picks a /30 that no address or route on this machine
// overlaps, and returns its two usable addresses.
func freeSubnet(ctx context.Context) (hostIP, nsIP net.IP, err error) {
	var used []*net.IPNet
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := exec.CommandContext(ctx, "ip", args...).Output()
		if err != nil {
			return nil, nil, fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
		}
		for _, f := range strings.Fields(string(out)) {
			if _, cidr, err := net.ParseCIDR(f); err == nil {
				used = append(used, cidr)
			} else if a := net.ParseIP(f); a != nil && a.To4() != nil {
				used = append(used, &net.IPNet{IP: a.To4(), Mask: net.CIDRMask(32, 32)})
			}
		}
	}
	for range 50 {
		r, _ := rand.Int(rand.Reader, big.NewInt(1<<16))
		v := r.Int64() << 2 // a /30 in 10.100.0.0/14
		base := net.IPv4(10, byte(100+v>>16), byte(v>>8), byte(v)).To4()
		subnet := &net.IPNet{IP: base, Mask: net.CIDRMask(30, 32)}
		if !overlaps(subnet, used) {
			h := append(net.IP(nil), base...)
			h[3]++
			n := append(net.IP(nil), h...)
			n[3]++
			return h, n, nil
		}
	}
	return nil, nil, errors.New("no free /30 in 10.100.0.0/14 after 50 tries")
}

func overlaps(a *net.IPNet, list []*net.IPNet) bool {
	for _, b := range list {
		// The default route (0.0.0.0/0) covers everything and is fine.
		if ones, _ := b.Mask.Size(); ones == 0 {
			continue
		}
		if a.Contains(b.IP) || b.Contains(a.IP) {
			return true
		}
	}
	return false
}

func ip(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
