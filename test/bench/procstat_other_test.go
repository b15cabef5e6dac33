//go:build !linux

package bench

import (
	"errors"
	"time"
)

// childCPU reads /proc, which only Linux has.
func childCPU(names ...string) (map[string]time.Duration, error) {
	return nil, errors.New("per-process CPU time is read from /proc (Linux only)")
}

// pidCPU reads /proc, which only Linux has.
func pidCPU(pid int) (time.Duration, error) {
	return 0, errors.New("per-process CPU time is read from /proc (Linux only)")
}

// childPIDs reads /proc, which only Linux has.
func childPIDs(names ...string) (map[string]int, error) {
	return nil, errors.New("child processes are found in /proc (Linux only)")
}

// pidSwitches reads /proc, which only Linux has.
func pidSwitches(pid int) (int64, error) {
	return 0, errors.New("context switches are read from /proc (Linux only)")
}
