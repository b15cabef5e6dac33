package controlplane

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Main runs a test package against one control plane: it starts one (or
// wraps KUBECONFIG's cluster), stores it in *cp, runs the tests, stops it and
// then fails the run if goroutines were leaked. Use it from TestMain:
//
//	var cp *controlplane.ControlPlane
//
//	func TestMain(m *testing.M) { os.Exit(controlplane.Main(m, &cp, controlplane.Options{})) }
//
// Goroutines already running when Main starts (klog's flush daemon and the
// like) are not leaks; leakOpts may ignore more.
//
// With -short (make test-short) the package's tests are not run at all:
// they share the control plane, which takes seconds to start (and minutes
// to build on a fresh machine). make test runs them.
func Main(m *testing.M, cp **ControlPlane, opts Options, leakOpts ...goleak.Option) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		fmt.Println("controlplane: -short: this package's tests need a control plane; make test runs them")
		return 0
	}
	leakOpts = append([]goleak.Option{goleak.IgnoreCurrent()}, leakOpts...)
	if opts.Logf == nil {
		opts.Logf = log.New(os.Stderr, "controlplane: ", log.Ltime|log.Lmicroseconds).Printf
	}
	c, err := StartOrExisting(context.Background(), opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	*cp = c
	code := m.Run()
	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stop control plane: %v\n", err)
		code = 1
	}
	*cp = nil
	if code == 0 {
		if err := findLeaks(leakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines leaked by the tests: %v\n", err)
			code = 1
		}
	}
	return code
}

// leakGrace is how long goroutines may take to wind down after the tests.
// goleak.Find alone gives up after about half a second, but some libraries
// linger longer after a clean close: spdystream's shutdown goroutine, for
// one, waits up to a second to report a close error nobody reads.
const leakGrace = 10 * time.Second

// findLeaks repeats goleak.Find until no goroutines are left over or
// leakGrace has passed. Clean runs pay nothing extra.
func findLeaks(opts ...goleak.Option) error {
	deadline := time.Now().Add(leakGrace)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}
