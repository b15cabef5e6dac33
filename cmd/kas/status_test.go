package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"kubetunnel/internal/testutil"
	"kubetunnel/kas"
)

func statusAgents(t *testing.T, obs, token string) (int, []string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+obs+"/api/v1/status", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep kas.StatusReport
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	var names []string
	for _, a := range rep.Agents {
		names = append(names, a.Name)
	}
	return resp.StatusCode, names
}

// The status shows a user the agents in their users[].agents only, and
// everyone every agent once observability.status.public is true.
func TestStatusAccess(t *testing.T) {
	agents := fmt.Sprintf(`agents:
  - name: prod
    token_sha256: [%q]
  - name: dev
    token_sha256: [%q]
users:
  - name: bob
    token_sha256: [%q]
    agents: [dev]
`, kas.HashToken("p"), kas.HashToken("d"), kas.HashToken("bob-token"))
	obs := startKasObs(t, writeKasConfig(t, "", agents))
	if code, _ := statusAgents(t, obs, ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := statusAgents(t, obs, "p"); code != http.StatusUnauthorized {
		t.Errorf("an agent's token: %d, want 401", code)
	}
	if code, names := statusAgents(t, obs, "bob-token"); code != http.StatusOK || strings.Join(names, ",") != "dev" {
		t.Errorf("bob: %d %v, want only dev", code, names)
	}
	if _, m := get(t, "http://"+obs+"/metrics"); !strings.Contains(m, `kas_agent_connections{agent="dev"} 0`) || !strings.Contains(m, `kas_agent_connections{agent="prod"} 0`) {
		t.Errorf("/metrics: want kas_agent_connections 0 for each configured agent")
	}
	code, body := get(t, "http://"+obs+"/")
	if code != http.StatusUnauthorized || !strings.Contains(body, `<form method="post" action="/login">`) || strings.Contains(body, "prod") {
		t.Errorf("page without a token: %d\n%s", code, body)
	}

	obs = startKasObs(t, writeKasConfig(t, ", status: {public: true}", agents))
	if code, names := statusAgents(t, obs, ""); code != http.StatusOK || strings.Join(names, ",") != "dev,prod" {
		t.Errorf("public: %d %v, want dev,prod", code, names)
	}
	code, body = get(t, "http://"+obs+"/")
	if code != http.StatusOK || !strings.Contains(body, `<meta http-equiv="refresh" content="10">`) || !strings.Contains(body, "prod · <span class=\"bad\">not connected</span>") {
		t.Errorf("public page: %d\n%s", code, body)
	}
}

// kas agents with no kas at the address says so, and what --server is.
func TestAgentsUnreachable(t *testing.T) {
	addr := testutil.FreeAddr(t)
	code, out, errOut := runKas(t, "agents", "--server", "http://"+addr)
	if code != 1 || out != "" || !strings.Contains(errOut, "cannot reach kas at http://"+addr) || !strings.Contains(errOut, "--server takes the URL of its observability.listen") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runKas(t, "agents", "-o", "yaml"); code != 2 || !strings.Contains(errOut, "want table or json") {
		t.Errorf("-o yaml: exit %d %q", code, errOut)
	}
}

// Token guessing on the status page: an address that sent 20 bad tokens
// in a minute gets 429 (even with a good token), while a user at another
// address is still served.
func TestStatusTokenGuessingLimited(t *testing.T) {
	agents := fmt.Sprintf("agents:\n  - name: dev\n    token_sha256: [%q]\nusers:\n  - name: bob\n    token_sha256: [%q]\n    agents: [dev]\n",
		kas.HashToken("d"), kas.HashToken("bob-token"))
	obs := startKasObs(t, writeKasConfig(t, "", agents))
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	}
	try := func(c *http.Client, token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+obs+"/api/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	attacker, user := from("127.0.0.1"), from("127.0.0.2")
	codes := map[int]int{}
	for i := range 30 {
		codes[try(attacker, fmt.Sprintf("guess-%d", i))]++
	}
	if codes[http.StatusUnauthorized] != 20 || codes[http.StatusTooManyRequests] != 10 {
		t.Errorf("30 guesses: %v, want 20 × 401 then 10 × 429", codes)
	}
	if c := try(attacker, "bob-token"); c != http.StatusTooManyRequests {
		t.Errorf("a good token from the guessing address: %d, want 429", c)
	}
	if c := try(user, "bob-token"); c != http.StatusOK {
		t.Errorf("bob from another address: %d, want 200", c)
	}
}
