// Package stopsignal turns the first SIGINT or SIGTERM into a cancelled
// context, for kas's and agentk's mains: the first signal starts a
// graceful stop, a second one gets Go's default action (exit at once), as
// an impatient Ctrl-C expects.
package stopsignal

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Context returns a context that is cancelled on the first SIGINT or
// SIGTERM. onSignal runs before the cancel, on the goroutine that saw
// the signal, so what it logs comes before anything the stop itself
// logs, and before the process can exit. stop releases the signals.
func Context(parent context.Context, onSignal func(os.Signal)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case sig := <-sigs:
			signal.Stop(sigs) // a second signal: Go's default action
			if onSignal != nil {
				onSignal(sig)
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		cancel()
		<-done
		signal.Stop(sigs)
	}
}
