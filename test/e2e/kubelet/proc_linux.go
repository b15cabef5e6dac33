package kubelet

import "syscall"

// sysProcAttr has the kernel kill exec'd commands if the test process dies,
// so an interrupted test leaves no "sleep 60" behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
