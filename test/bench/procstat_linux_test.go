package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which the kernel fixes at 100 for user space on every architecture Go
// runs Linux on.
const userHZ = 100

// childCPU is the user+system CPU time so far of each child process of
// this one whose command name (comm) is in names, summed over their
// threads, from /proc. The kas and agentk binaries run as such children
// in BenchmarkGetLatencyProcesses.
func childCPU(names ...string) (map[string]time.Duration, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]time.Duration, len(names))
	err := eachChild(func(comm string, _ int, fields []string) error {
		if !want[comm] {
			return nil
		}
		// fields[0] is field 3 (state): utime is field 14, stime 15.
		utime, err1 := strconv.ParseInt(fields[11], 10, 64)
		stime, err2 := strconv.ParseInt(fields[12], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("utime %q, stime %q", fields[11], fields[12])
		}
		out[comm] += time.Duration(utime+stime) * time.Second / userHZ
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("no child process named %q", n)
		}
	}
	return out, nil
}

// eachChild calls fn with the command name, process ID and
// /proc/<pid>/stat fields after the name of every child process of this
// one; an error of fn's stops it.
func eachChild(fn func(comm string, pid int, fields []string) error) error {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return err
	}
	self := os.Getpid()
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // the process exited since the glob
		}
		comm, fields, err := parseProcStat(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		// fields[1] is field 4, the parent's process ID.
		if ppid, _ := strconv.Atoi(fields[1]); ppid != self {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err := fn(comm, pid, fields); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// parseProcStat splits /proc/<pid>/stat into the command name (which
// may hold spaces and parentheses, so it ends at the last ')') and the
// fields after it.
func parseProcStat(data []byte) (string, []string, error) {
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return "", nil, fmt.Errorf("no (comm) in %q", data)
	}
	var fields []string
	for f := range bytes.FieldsSeq(data[end+1:]) {
		fields = append(fields, string(f))
	}
	if len(fields) < 13 {
		return "", nil, fmt.Errorf("%d fields after comm, want at least 13", len(fields))
	}
	return string(data[open+1 : end]), fields, nil
}

// pidCPU is the user+system CPU time so far of process pid (all its
// threads), from /proc/<pid>/stat. The remotedialer ends run as copies of
// this test binary, so their command names do not tell them apart.
func pidCPU(pid int) (time.Duration, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	_, fields, err := parseProcStat(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: utime %q, stime %q", path, fields[11], fields[12])
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// childPIDs is the process ID of the child process of this one with
// each command name in names (the first found, if there are more).
func childPIDs(names ...string) (map[string]int, error) {
	out := make(map[string]int, len(names))
	err := eachChild(func(comm string, pid int, _ []string) error {
		for _, n := range names {
			if comm == n && out[n] == 0 {
				out[n] = pid
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if out[n] == 0 {
			return nil, fmt.Errorf("no child process named %q", n)
		}
	}
	return out, nil
}

// pidSwitches is how many times the threads of process pid have been
// switched out so far (voluntary and not: a thread that blocks in a
// system call or a futex, or is preempted), summed over
// /proc/<pid>/task/*/status. A thread that has exited is not counted;
// the Go runtime keeps its threads.
func pidSwitches(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*/status", pid))
	if err != nil {
		return 0, err
	}
	if len(tasks) == 0 {
		return 0, fmt.Errorf("no threads of process %d in /proc", pid)
	}
	var n int64
	for _, path := range tasks {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // the thread exited since the glob
		}
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			k, v, ok := bytes.Cut(line, []byte(":"))
			if !ok || !bytes.HasSuffix(k, []byte("ctxt_switches")) {
				continue
			}
			c, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", path, k, err)
			}
			n += c
		}
	}
	return n, nil
}
