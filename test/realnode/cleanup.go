package realnode

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupFS is where the cgroup hierarchies are mounted.
const cgroupFS = "/sys/fs/cgroup"

// shimSocketDir is where containerd 1.6 puts its shims' sockets, named by
// a hash of (containerd's address, namespace, container id).
const shimSocketDir = "/run/containerd/s"

// cleanup removes everything a node made: the processes in its cgroups
// (containers), the shims of its containerd, every mount under dir (image
// snapshots, pod volumes, pod network namespaces), its cgroups and dir. It
// can run more than once: Stop runs it, and Main's parent process runs it
// again after the test process has ended, however that ended.
func cleanup(dir, cgroupName, socket string) error {
	var errs []error
	if cgroupName != "" {
		errs = append(errs, killCgroupProcs(cgroupName))
	}
	if socket != "" {
		errs = append(errs, killShims(socket))
	}
	if dir != "" {
		errs = append(errs, unmountUnder(dir))
	}
	if cgroupName != "" {
		errs = append(errs, removeCgroups(cgroupName))
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// cgroupDirs returns the node's cgroup directory in every hierarchy that
// has it.
func cgroupDirs(name string) []string {
	var dirs []string
	entries, _ := os.ReadDir(cgroupFS)
	for _, e := range entries {
		d := filepath.Join(cgroupFS, e.Name(), name)
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	// A cgroup v2 only machine has no per-controller directories.
	if d := filepath.Join(cgroupFS, name); len(dirs) == 0 {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// killCgroupProcs SIGKILLs every process in the node's cgroups until none
// is left: the containers, whose shims might otherwise outlive the node.
func killCgroupProcs(name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := map[int]bool{}
		for _, d := range cgroupDirs(name) {
			_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
					return nil
				}
				data, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil {
						pids[pid] = true
					}
				}
				return nil
			})
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still in cgroup %s after SIGKILL: %v", name, pids)
		}
		for pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killShims ends the containerd shims started for the containerd listening
// on socket, and removes their sockets.
func killShims(socket string) error {
	entries, _ := os.ReadDir("/proc")
	var errs []error
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		flags := map[string]string{}
		for i := 1; i+1 < len(args); i++ {
			if strings.HasPrefix(args[i], "-") {
				flags[strings.TrimLeft(args[i], "-")] = args[i+1]
			}
		}
		if flags["address"] != socket {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill shim %d: %w", pid, err))
		}
		sum := sha256.Sum256([]byte(filepath.Join(socket, flags["namespace"], flags["id"])))
		_ = os.Remove(filepath.Join(shimSocketDir, fmt.Sprintf("%x", sum)))
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var mps []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps, nil
}

// unmountUnder detaches every mount below dir.
func unmountUnder(dir string) error {
	mps, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroups removes the node's cgroup trees, children first.
func removeCgroups(name string) error {
	var errs []error
	for _, d := range cgroupDirs(name) {
		var dirs []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, p := range dirs {
			// A cgroup just emptied can be busy for a moment.
			var err error
			for range 50 {
				if err = syscall.Rmdir(p); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// createCgroups makes the node's cgroup in every hierarchy, for the
// kubelet's cgroupRoot; with cgroup v1, cpuset needs its CPUs and memory
// nodes set (from the parent's) before any child can hold a process. (These
// machines have cgroup v1; the v2 branch is untested here.)
func createCgroups(name string) error {
	// cgroup v2 alone: one hierarchy at the mount point; the kubelet
	// enables the controllers below it.
	if _, err := os.Stat(filepath.Join(cgroupFS, "cgroup.controllers")); err == nil {
		if err := os.MkdirAll(filepath.Join(cgroupFS, name), 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", name, err)
		}
		return nil
	}
	entries, err := os.ReadDir(cgroupFS)
	if err != nil {
		return fmt.Errorf("read %s: %w", cgroupFS, err)
	}
	for _, e := range entries {
		h := filepath.Join(cgroupFS, e.Name())
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err != nil {
			continue // not a hierarchy
		}
		d := filepath.Join(h, name)
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(filepath.Dir(d), f)); err == nil {
				if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
					return fmt.Errorf("set %s of %s: %w", f, d, err)
				}
			}
		}
	}
	return nil
}

// leftovers describes what cleanup should have removed and did not:
// processes of the shims, mounts, cgroups, the directory. Empty when clean.
func leftovers(dir, cgroupName, socket string) []string {
	var out []string
	if mps, _ := mountsUnder(dir); len(mps) > 0 {
		out = append(out, fmt.Sprintf("mounts under %s: %v", dir, mps))
	}
	if _, err := os.Stat(dir); err == nil {
		out = append(out, "directory "+dir)
	}
	if ds := cgroupDirs(cgroupName); len(ds) > 0 {
		out = append(out, fmt.Sprintf("cgroups %v", ds))
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(raw), "containerd-shim") && strings.Contains(string(raw), socket) {
			out = append(out, "shim process "+e.Name())
		}
	}
	return out
}
