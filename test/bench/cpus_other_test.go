//go:build !linux

package bench

import "errors"

func pinThreads(pid, cpu int) error { return errors.New("pinning to CPUs needs Linux") }

func splitCPUs() error { return pinThreads(0, 0) }
