package realnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// The node's address inside its namespace, and the namespace's other
// addresses. Every cluster gets a namespace of its own, so clusters that
// run at the same time (two test packages) use the same addresses without
// clashing.
const (
	NodeIP     = "10.250.0.1"
	nodeCIDR   = NodeIP + "/24"
	nodePeerIP = "10.250.0.2"
	// PodCIDR is the CNI bridge's range inside the node's namespace.
	PodCIDR = "10.88.0.0/24"
	// ServiceCIDR is kube-apiserver's service range (nothing routes it:
	// there is no kube-proxy).
	ServiceCIDR = "10.96.0.0/24"
)

// nsPrefix starts the name of every node namespace; the creating process's
// id follows, so a later run can remove what a killed run left behind.
const nsPrefix = "kubetunnel-node-"

// netnsDir is where `ip netns` mounts named namespaces.
const netnsDir = "/run/netns"

// createNamespace makes a network namespace holding a veth pair with both
// ends inside: the node's address on one end and the default route
// through it, so the kubelet finds a non-loopback node IP, and loopback up.
func createNamespace(ctx context.Context) (string, error) {
	if os.Geteuid() != 0 {
		return "", ErrNotRoot
	}
	if err := Check(); err != nil {
		return "", err
	}
	removeStaleNamespaces(ctx)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), hex.EncodeToString(b))
	steps := [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "add", "node0", "type", "veth", "peer", "name", "node1"},
		{"-n", name, "addr", "add", nodeCIDR, "dev", "node0"},
		{"-n", name, "link", "set", "node0", "up"},
		{"-n", name, "link", "set", "node1", "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "route", "add", "default", "via", nodePeerIP, "dev", "node0", "onlink"},
	}
	for _, args := range steps {
		if err := ip(ctx, args...); err != nil {
			return "", errors.Join(err, deleteNamespace(name))
		}
	}
	return name, nil
}

// deleteNamespace removes the namespace and the veth pair inside it.
func deleteNamespace(name string) error {
	err := ip(context.Background(), "netns", "del", name)
	if err != nil && strings.Contains(err.Error(), "No such file") {
		return nil
	}
	return err
}

// removeStaleNamespaces deletes node namespaces whose creating process is
// gone.
func removeStaleNamespaces(ctx context.Context) {
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || processAlive(pid) {
			continue
		}
		_ = ip(ctx, "netns", "del", e.Name())
	}
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
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
