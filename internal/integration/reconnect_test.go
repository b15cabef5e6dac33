package integration

import (
	"fmt"
	"testing"
	"time"

	"kubetunnel/agentk"
	tu "kubetunnel/internal/testutil"
)

// kas restarted ten times in a row, each restart a clean stop (GoAway) a
// moment after the last: with production backoff (100 ms doubling to
// 30 s), the agent is back within a few seconds every time. A GoAway is
// kas asking agentk to move, so it restarts the backoff; counted as a
// failure, the waits would climb restart by restart towards 30 s.
func TestBackToBackRestartsDoNotClimbBackoff(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts kas repeatedly: not in -short")
	}
	e := newEnv(t, "ws")
	e.start()
	e.startAgent(func(o *agentk.Options) { o.ReconnectInitial, o.ReconnectMax = 0, 0 })
	e.waitConnected(1)
	const restarts, bound = 10, 3 * time.Second
	for i := range restarts {
		e.stop()
		e.start()
		ready := time.Now()
		tu.Poll(t, 5*time.Millisecond, bound, fmt.Sprintf("restart %d: the agent back (late means the reconnect backoff climbed)", i+1), func() error {
			if n := e.kas.ConnectedSessions(agentName); n != 1 {
				return fmt.Errorf("%d sessions", n)
			}
			return nil
		})
		t.Logf("restart %d: back %v after kas was ready", i+1, time.Since(ready).Round(time.Millisecond))
	}
}
