package tunnel

import (
	"testing"
	"time"
)

// The ceiling doubles per attempt; a connection that stayed up Reset, or
// a Restart (kas asked agentk to move), starts again from Initial.
func TestBackoff(t *testing.T) {
	b := Backoff{Initial: 10 * time.Millisecond, Max: time.Hour}
	climb := func() {
		for range 20 {
			b.Next()
		}
	}
	first := func() time.Duration {
		var worst time.Duration
		for range 50 { // the wait is random: the largest of many draws bounds the ceiling
			c := b
			worst = max(worst, c.Next())
		}
		return worst
	}
	climb()
	if w := first(); w <= 10*time.Millisecond {
		t.Fatalf("after 20 attempts the waits are still at most %v", w)
	}
	b.Connected(DefaultBackoffReset - time.Second)
	if w := first(); w <= 10*time.Millisecond {
		t.Errorf("a connection shorter than the reset restarted the backoff (waits up to %v)", w)
	}
	b.Connected(DefaultBackoffReset)
	if w := first(); w > 10*time.Millisecond {
		t.Errorf("a connection up for %v did not restart the backoff: wait %v", DefaultBackoffReset, w)
	}
	climb()
	b.Restart()
	if w := first(); w > 10*time.Millisecond {
		t.Errorf("Restart did not restart the backoff: wait %v", w)
	}
}
