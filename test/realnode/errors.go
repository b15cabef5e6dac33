package realnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// Sentinel errors: what is missing for a real node, and what to do.
var (
	// ErrNotRoot: namespaces, cgroups and mounts need root.
	ErrNotRoot = errors.New("a real node needs root (network namespace, cgroups, mounts); run as root, as CI does")
	// ErrMissing wraps every missing program or file; the message names
	// the Debian package that provides it.
	ErrMissing = errors.New("missing")
	// ErrNotInNamespace: Start was called outside the node's namespace
	// (use Main or Reexec).
	ErrNotInNamespace = errors.New("realnode.Start must run inside the node's network namespace: call it from Main or after Reexec")
	// ErrLowDisk: the node's directory has less free space than a node
	// needs (its pods would be evicted for disk pressure).
	ErrLowDisk = errors.New("not enough free disk for a real node")
)

// CNIDir is where Debian's containernetworking-plugins installs the plugins.
const CNIDir = "/usr/lib/cni"

// requirement is a program or file and the package that provides it.
type requirement struct {
	name, pkg string
	path      bool // name is a path, not a program on PATH
}

var requirements = []requirement{
	{"ip", "iproute2", false},
	{"nsenter", "util-linux", false},
	{"containerd", "containerd", false},
	{"containerd-shim-runc-v2", "containerd", false},
	{"ctr", "containerd", false},
	{"runc", "runc", false},
	{"busybox", "busybox-static", false},
	{filepath.Join(CNIDir, "bridge"), "containernetworking-plugins", true},
	{filepath.Join(CNIDir, "host-local"), "containernetworking-plugins", true},
	{filepath.Join(CNIDir, "loopback"), "containernetworking-plugins", true},
}

// checkDisk fails with ErrLowDisk when dir's filesystem has less than
// minFreeDisk available.
func checkDisk(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("free space of %s: %w", dir, err)
	}
	if free := st.Bavail * uint64(st.Bsize); free < minFreeDisk {
		return fmt.Errorf("%w: %d MiB free on %s, at least %d MiB needed; free some space (go clean -cache, old files in %s)",
			ErrLowDisk, free>>20, dir, minFreeDisk>>20, os.TempDir())
	}
	return nil
}

// Check reports everything a real node lacks on this machine, or nil.
// The demo uses it to say why it falls back to the light control plane.
func Check() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	var errs []error
	var pkgs []string
	for _, r := range requirements {
		var err error
		if r.path {
			_, err = os.Stat(r.name)
		} else {
			_, err = exec.LookPath(r.name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s (package %s)", ErrMissing, r.name, r.pkg))
			pkgs = appendUnique(pkgs, r.pkg)
		}
	}
	if len(errs) > 0 {
		errs = append(errs, fmt.Errorf("install them with: apt-get install -y %s", joinWords(pkgs)))
	}
	return errors.Join(errs...)
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func joinWords(words []string) string {
	out := ""
	for i, w := range words {
		if i > 0 {
			out += " "
		}
		out += w
	}
	return out
}
