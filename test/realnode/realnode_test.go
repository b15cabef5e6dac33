package realnode

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A machine without the node's programs gets one error that names each
// missing piece and the apt-get line that installs them all.
func TestCheckNamesMissingPackages(t *testing.T) {
	if os.Geteuid() != 0 {
		if err := Check(); !errors.Is(err, ErrNotRoot) {
			t.Fatalf("Check as non-root: %v, want ErrNotRoot", err)
		}
		return
	}
	t.Setenv("PATH", t.TempDir())
	err := Check()
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("Check with an empty PATH: %v", err)
	}
	for _, want := range []string{
		"containerd (package containerd)", "runc (package runc)", "busybox (package busybox-static)",
		"ip (package iproute2)", "apt-get install -y iproute2 util-linux containerd runc busybox-static",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

// A nearly full disk stops Start before it starts a node, with an error
// that says how much is free and what to do, instead of a node that
// evicts its pods for disk pressure halfway through a test.
func TestCheckDiskRefusesANearlyFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal(ErrNotRoot)
	}
	small := t.TempDir()
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount a 64 MiB tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(small, 0) })
	err := checkDisk(small)
	if !errors.Is(err, ErrLowDisk) {
		t.Fatalf("checkDisk on a 64 MiB filesystem: %v, want ErrLowDisk", err)
	}
	for _, want := range []string{"64 MiB free on " + small, "at least 1024 MiB needed", "go clean -cache"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	if err := checkDisk(os.TempDir()); err != nil {
		t.Errorf("checkDisk on this machine's %s: %v", os.TempDir(), err)
	}
}

// cleanup removes what a node leaves when its test process was killed: a
// process in the node's cgroups, a mount under its directory, the cgroups
// and the directory; a second run finds nothing to do.
func TestCleanupRemovesProcessesMountsCgroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal(ErrNotRoot)
	}
	dir, err := os.MkdirTemp("", "ktn-test-") // a unique base name: the cgroup's
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cg := cgroupName(dir)
	child := filepath.Join(cg, "kubepods", "pod1")
	for _, c := range []string{cg, filepath.Dir(child), child} {
		if err := createCgroups(c); err != nil {
			t.Fatal(err)
		}
	}
	sleep := exec.Command("sleep", "600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleep.Wait() }()
	for _, d := range cgroupDirs(child) {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(sleep.Process.Pid)), 0o644); err != nil {
			t.Fatalf("move the process into %s: %v", d, err)
		}
	}
	mnt := filepath.Join(dir, "kubelet", "pods", "x", "volume")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(dir, cg, "none"); len(left) != 3 {
		t.Fatalf("before cleanup: %v, want the mount, the directory and the cgroups", left)
	}

	if err := cleanup(dir, cg, filepath.Join(dir, "containerd.sock")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("the process in the cgroup ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		_ = sleep.Process.Kill()
		t.Fatal("the process in the node's cgroup still runs after cleanup")
	}
	if left := leftovers(dir, cg, "none"); len(left) > 0 {
		t.Errorf("left after cleanup: %v", left)
	}
	if err := cleanup(dir, cg, filepath.Join(dir, "containerd.sock")); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

// A node whose owner was killed (kill -9 of a test run or of the demo) is
// removed by the next run; one whose owner lives is left alone.
func TestRemoveStaleNodes(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	stale := filepath.Join(os.TempDir(), "ktn-stale")
	live := filepath.Join(os.TempDir(), "ktn-live")
	for dir, pid := range map[string]int{stale: 1 << 22, live: os.Getpid()} {
		if err := os.MkdirAll(filepath.Join(dir, "containerd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(stale, "containerd", "rootfs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	removeStaleNodes(t.Logf)
	if left := leftovers(stale, cgroupName(stale), "none"); len(left) > 0 {
		t.Errorf("stale node not removed: %v", left)
	}
	if _, err := os.Stat(filepath.Join(live, ownerFile)); err != nil {
		t.Errorf("the node of a live process was touched: %v", err)
	}
}
