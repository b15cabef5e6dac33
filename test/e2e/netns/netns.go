package netns

import (
	"errors"
	"net"
)

// Sentinel errors, so that a test can say what to fix.
var (
	// ErrNotRoot: creating a network namespace needs root.
	ErrNotRoot = errors.New("creating a network namespace needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run the tests as root, as CI does")
	// ErrNoIP: the ip command is missing.
	ErrNoIP = errors.New("the ip command is not installed; install iproute2 (apt-get install -y iproute2)")
	// ErrUnsupported: not Linux.
	ErrUnsupported = errors.New("network namespaces need Linux")
)

// Namespace is a network namespace linked to this process's namespace by
// a veth pair with a /30 between them: HostIP on this side, IP inside.
type Namespace struct {
	// Name is the namespace's name under /var/run/netns.
	Name string
	// HostIP is this side of the veth pair; connections from this
	// machine into the namespace come from it.
	HostIP net.IP
	// IP is the namespace's side; listeners from Listen bind to it.
	IP net.IP

	hostLink string
}
