package controlplane

import "syscall"

// sysProcAttr puts the child in its own process group, so Stop can kill it
// together with anything it spawned, and asks the kernel to SIGKILL it when
// the test process dies, so an interrupted or timed-out test leaves nothing
// running. (The kernel sends the signal when the forking OS thread exits;
// the Go runtime keeps its threads for the life of the process unless a
// goroutine exits while locked to one, so in practice that is process exit.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
