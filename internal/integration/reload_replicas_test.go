package integration

import (
	"slices"
	"strings"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
	"kubetunnel/kas"
)

// With several replicas each reloads its own config: a user added on
// every replica reaches the agent through a replica that does not hold
// it (forwarded over the private API), and the agent's connection to its
// replica is untouched.
func TestReplicasReload(t *testing.T) {
	const carol = "ha-carol-token-0123456789"
	h := newHA(t, 2)
	r0, r1 := h.c.Replicas[0], h.c.Replicas[1]
	h.startAgent(r0.AgentAddress())
	testutil.Eventually(t, 10*time.Second, "alice via replica 1", func() bool {
		code, _, _ := h.get(r1.ProxyURL(haAgent), haAlice)
		return code == 200
	})
	if code, _, body := h.get(r1.ProxyURL(haAgent), carol); code != 401 {
		t.Fatalf("carol before the reload: %d %s, want 401", code, body)
	}
	for _, r := range h.c.Replicas {
		next := *r.Config
		next.Users = append(slices.Clone(r.Config.Users), kas.UserEntry{Name: "carol", TokenSHA256: []string{kas.HashToken(carol)}, Agents: []string{haAgent}})
		if err := r.Server().Reload(&next); err != nil {
			t.Fatal(err)
		}
	}
	code, seen, body := h.get(r1.ProxyURL(haAgent), carol)
	if code != 200 || seen.ImpUser != "carol" {
		t.Errorf("carol via replica 1 after the reload: %d %s, want 200 as carol", code, body)
	}
	if n := strings.Count(r0.Log.String(), `msg="Agent connected"`); n != 1 || r0.Server().ConnectedSessions(haAgent) != 1 {
		t.Errorf("the agent connected %d times to replica 0 (%d sessions now), want its one connection kept", n, r0.Server().ConnectedSessions(haAgent))
	}
}
