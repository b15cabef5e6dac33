package testutil

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// WaitBlocked waits until a goroutine whose stack names every one of
// frames (substrings of its function names) is blocked: parked on a
// read, a channel, a select or a lock, not running. A test that must act
// while something waits (close a body under a blocked read, cancel a
// request once its watch runs) waits for that instead of sleeping.
func WaitBlocked(t testing.TB, timeout time.Duration, what string, frames ...string) {
	t.Helper()
	Eventually(t, timeout, what, func() bool { return blocked(frames) })
}

// blocked reports whether a goroutine matching frames is parked.
func blocked(frames []string) bool {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		header, _, _ := bytes.Cut(g, []byte("\n"))
		// "goroutine 7 [IO wait, 2 minutes]:"; running and runnable
		// goroutines, and one in a system call, are not waiting yet.
		if bytes.Contains(header, []byte("[running")) || bytes.Contains(header, []byte("[runnable")) || bytes.Contains(header, []byte("[syscall")) {
			continue
		}
		all := true
		for _, f := range frames {
			all = all && bytes.Contains(g, []byte(f))
		}
		if all {
			return true
		}
	}
	return false
}
