//go:build unix && !linux

package controlplane

import "syscall"

// sysProcAttr puts the child in its own process group so Stop can kill it
// together with anything it spawned. Pdeathsig is Linux-only.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
