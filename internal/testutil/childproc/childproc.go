// Package childproc runs a daemon a test needs (etcd, kube-apiserver,
// containerd, kubelet) as a child process in its own process group, its
// output in a log file, so a failing test can show the log's tail and an
// interrupted one leaves nothing running.
package childproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// killWait bounds the wait for a process to be reaped after SIGKILL.
const killWait = 10 * time.Second

// Process is one running child.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
}

// Options are Start's optional settings.
type Options struct {
	// Env is added to this process's environment ("K=V").
	Env []string
	// AppendLog keeps what the log file holds (a daemon a test restarts
	// keeps one log); the default starts it empty.
	AppendLog bool
}

// Start runs binary with args, stdout and stderr going to logPath. The
// child gets its own process group, so Stop reaches anything it spawned,
// and on Linux the kernel kills it when the test process dies.
func Start(name, logPath, binary string, args ...string) (*Process, error) {
	return StartWith(Options{}, name, logPath, binary, args...)
}

// StartWith is Start with options.
func StartWith(o Options, name, logPath, binary string, args ...string) (*Process, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if o.AppendLog {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	logFile, err := os.OpenFile(logPath, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	// The child inherits its own copy of the descriptor, so ours can be
	// closed right after start.
	defer logFile.Close()
	cmd := exec.Command(binary, args...)
	if o.Env != nil {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop sends sig to the process group, SIGKILL if it has not exited
// after grace, and waits for it to be reaped. A nil or exited process is
// already stopped.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) error {
	if p == nil {
		return nil
	}
	if ok, _ := p.Exited(); ok {
		return nil
	}
	if sig != syscall.SIGKILL {
		// A negative pid addresses the process group created by Setpgid.
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
		select {
		case <-p.done:
			return nil
		case <-time.After(grace):
		}
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", p.Name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.cmd.Process.Pid)
	}
}

// PID is the child's process id (its process group's too).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Kill is Stop with SIGKILL straight away.
func (p *Process) Kill() error { return p.Stop(syscall.SIGKILL, 0) }

// LogTail returns the last n lines of the log, for error messages.
func (p *Process) LogTail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "--- last %d lines of %s ---\n", len(lines), p.LogPath)
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}
