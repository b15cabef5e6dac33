package kas

import (
	"net/http"
	"testing"
	"time"
)

// A proxy user cannot make agentk drop its connection through agentk's
// GoAway endpoint: kas refuses the path, so the agent's one session
// stays and it never hears a GoAway.
func TestProxyUserCannotReachGoAway(t *testing.T) {
	e, a := startWithConfig(t, "")
	for range 30 {
		for _, p := range []string{"/-/tunnel/goaway", "//-/tunnel/goaway", "/%2D/tunnel/goaway"} {
			if code, body := e.call("POST", p, aliceToken, nil, nil); code != http.StatusNotFound {
				t.Fatalf("POST %s: %d %s, want 404", p, code, body)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := e.kas.ConnectedSessions(agentName); n != 1 {
		t.Errorf("%d sessions after the calls, want 1", n)
	}
	if a.log.Contains("GoAway") {
		t.Errorf("agentk heard a GoAway:\n%s", a.log)
	}
	// The agent still serves the caller.
	if code, body := e.call("GET", "/api/v1/pods", aliceToken, nil, nil); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
}
