package kas

import (
	"net/http"
	"strings"
	"testing"
	"time"

	tu "kubetunnel/internal/testutil"
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

// With a user token, the status API shows only that user's agents, and
// answers the same for an agent that does not exist and one the user may
// not use; a bad token is 401.
func TestStatusAPIScopedToUser(t *testing.T) {
	e := newEnv(t, "ws")
	e.start()
	get := func(path, token string) (int, string) {
		hdr := map[string]string{}
		if token != "" {
			hdr["Authorization"] = "Bearer " + token
		}
		code, b := tu.Do(t, "GET", "http://"+e.kas.Addr("observability").String()+path, nil, hdr)
		return code, strings.ReplaceAll(string(b), agentName, "NAME")
	}
	if code, body := get("/api/v1/agents/"+agentName, aliceToken); code != 200 {
		t.Errorf("alice's own agent: %d %s", code, body)
	}
	forbiddenCode, forbidden := get("/api/v1/agents/"+agentName, bobToken)
	unknownCode, unknown := get("/api/v1/agents/NAME", bobToken)
	if forbiddenCode != http.StatusNotFound || forbiddenCode != unknownCode || forbidden != unknown {
		t.Errorf("bob: forbidden agent %d %q, unknown agent %d %q: want the same 404", forbiddenCode, forbidden, unknownCode, unknown)
	}
	if code, body := get("/api/v1/agents", bobToken); code != 200 || strings.Contains(body, "NAME") {
		t.Errorf("bob's list: %d %s, want no agent", code, body)
	}
	if code, _ := get("/api/v1/agents", "guess"); code != http.StatusUnauthorized {
		t.Errorf("bad token: %d, want 401", code)
	}
}
