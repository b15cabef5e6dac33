package kas

import (
	"testing"
	"time"

	"kubetunnel/agentk"
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
		for e.kas.ConnectedSessions(agentName) != 1 {
			if waited := time.Since(ready); waited > bound {
				t.Fatalf("restart %d: agent not back %v after kas was ready: the reconnect backoff climbed", i+1, waited)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("restart %d: back %v after kas was ready", i+1, time.Since(ready).Round(time.Millisecond))
	}
}
