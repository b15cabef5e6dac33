package stopsignal

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The first signal runs onSignal and then cancels the context: what
// onSignal did is visible once the context is done.
func TestFirstSignalRunsOnSignalThenCancels(t *testing.T) {
	var got os.Signal
	ctx, stop := Context(context.Background(), func(sig os.Signal) {
		time.Sleep(20 * time.Millisecond) // a slow log write: the cancel must wait for it
		got = sig
	})
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("no cancel after SIGTERM")
	}
	if got != syscall.SIGTERM {
		t.Fatalf("onSignal saw %v before the cancel, want SIGTERM", got)
	}
}

// stop without a signal ends the watcher and leaves no goroutine.
func TestStopWithoutSignal(t *testing.T) {
	ctx, stop := Context(context.Background(), func(os.Signal) { t.Error("onSignal without a signal") })
	stop()
	if ctx.Err() == nil {
		t.Error("context not done after stop")
	}
}
