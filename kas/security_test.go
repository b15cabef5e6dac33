package kas

import (
	"net/http"
	"strings"
	"testing"

	tu "kubetunnel/internal/testutil"
)

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
