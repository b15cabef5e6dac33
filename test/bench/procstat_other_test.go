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
