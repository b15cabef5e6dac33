package load

import (
	"testing"

	"go.uber.org/goleak"
)

// The thousand agents, their connections and the load's client must all
// be gone at the end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
