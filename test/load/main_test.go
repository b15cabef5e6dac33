package load

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// The thousand agents, their connections and the load's client must all
// be gone at the end.
func TestMain(m *testing.M) {
	// -short (make test-short) leaves the minute-long load test out.
	flag.Parse()
	if testing.Short() {
		fmt.Println("load: -short: the load test runs for minutes; make test runs it")
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
