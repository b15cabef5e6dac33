package bench

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain starts nothing itself: the real control plane costs seconds and
// only the proxy benchmarks need it, so they start it on first use
// (sharedProxyEnv). After the run everything is stopped and the package
// fails if goroutines are left behind.
func TestMain(m *testing.M) {
	// The agent benchmarks start this binary again as a swarm of agents.
	if spec := os.Getenv(swarmEnv); spec != "" {
		os.Exit(runSwarm(spec))
	}
	// BenchmarkGetLatencyProcesses starts it as remotedialer's two ends.
	if spec := os.Getenv(rdProcEnv); spec != "" {
		os.Exit(runRemotedialerProc(spec))
	}
	switch v := os.Getenv(cpusEnv); v {
	case "":
	case "split":
		if err := splitCPUs(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "FAIL: %s=%q: the only value is \"split\"\n", cpusEnv, v)
		os.Exit(1)
	}
	// Goroutines running before any benchmark (klog's flush daemon and the
	// like) are not leaks.
	ignore := []goleak.Option{
		goleak.IgnoreCurrent(),
		// rancher/remotedialer v0.6.2 (the peer in the comparison suite) leaves
		// a stream's copy goroutine blocked in backPressure.Wait for good when
		// its session ends while the stream is paused: the peer's leak, not
		// ours, so it must not fail this package.
		goleak.IgnoreAnyFunction("github.com/rancher/remotedialer.(*backPressure).Wait"),
	}
	code := m.Run()
	if err := stopProxyEnv(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stopping the proxy environment: %v\n", err)
		code = 1
	}
	if code == 0 {
		if err := findLeaks(ignore...); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// findLeaks retries goleak.Find for a while: connections to a killed API
// server and yamux sessions take a moment to wind down after a clean stop.
func findLeaks(opts ...goleak.Option) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}
