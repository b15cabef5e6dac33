package testutil_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
)

// WaitBlocked returns once the goroutine it names waits on a channel,
// and not before it got there.
func TestWaitBlocked(t *testing.T) {
	ready, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		<-ready
		parkedHere(release)
	}()
	close(ready)
	testutil.WaitBlocked(t, 5*time.Second, "parkedHere to block", "testutil_test.parkedHere")
	select {
	case <-release:
		t.Fatal("released before the wait")
	default:
	}
	close(release)
	<-done

	// A goroutine that runs and never waits is not blocked.
	var stop atomic.Bool
	spun := make(chan struct{})
	go func() {
		defer close(spun)
		spinsHere(&stop)
	}()
	f := &fatalRecorder{TB: t}
	failed := make(chan struct{})
	go func() {
		defer close(failed)
		testutil.WaitBlocked(f, 200*time.Millisecond, "spinsHere to block", "testutil_test.spinsHere")
	}()
	<-failed
	stop.Store(true)
	<-spun
	if !strings.HasSuffix(f.msg, "waiting for spinsHere to block") {
		t.Errorf("a running goroutine counted as blocked (failure: %q)", f.msg)
	}
}

//go:noinline
func spinsHere(stop *atomic.Bool) {
	for !stop.Load() {
	}
}

//go:noinline
func parkedHere(release chan struct{}) { <-release }
