package kas

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	tu "kubetunnel/internal/testutil"
)

// TestGitLabStatusAPIUsers: with gitlab:, the status API and page scope
// callers by users[] tokens naming agents by GitLab id, and by GitLab
// personal access tokens: a GitLab user sees the agents GitLab lets them
// reach (authorize_proxy_user), one GitLab lets reach none is refused
// (401), and a new token while GitLab is down is answered 503.
func TestGitLabStatusAPIUsers(t *testing.T) {
	e := newGitLabEnv(t, time.Minute, time.Minute)
	key := strconv.FormatInt(e.agent.ID, 10)
	e.cfg.Users = []UserEntry{
		{Name: "alice", TokenSHA256: []string{HashToken(aliceToken)}, Agents: []string{key}},
		{Name: "bob", TokenSHA256: []string{HashToken(bobToken)}, Agents: []string{"999999"}},
	}
	e.start()
	a, err := e.dialToken(e.token)
	if err != nil {
		t.Fatal(err)
	}
	firstConfig(t, a)
	get := func(path, token string) (int, string) {
		code, body := tu.Do(t, http.MethodGet, e.obsURL()+path, nil, map[string]string{"Authorization": "Bearer " + token})
		return code, string(body)
	}
	if code, body := get("/api/v1/agents", aliceToken); code != 200 || !strings.Contains(body, `"id": `+key) {
		t.Fatalf("alice: %d %s", code, body)
	}
	if code, body := get("/api/v1/agents", bobToken); code != 200 || strings.Contains(body, `"id": `+key) {
		t.Fatalf("bob sees an agent users[] does not give him: %d %s", code, body)
	}

	_, carol := e.gl.AddUser("carol", e.agent)
	_, dave := e.gl.AddUser("dave")
	for _, tok := range []string{carol, "pat:" + carol} {
		if code, body := get("/api/v1/agents", tok); code != 200 || !strings.Contains(body, `"id": `+key) {
			t.Errorf("GitLab user carol (%.4s…) in the agents API: %d %s", tok, code, body)
		}
		if code, body := get("/api/v1/status", tok); code != 200 || !strings.Contains(body, `"user": "carol"`) ||
			!strings.Contains(body, `"gitlab_user": true`) || !strings.Contains(body, `"name": "prod"`) {
			t.Errorf("GitLab user carol in the status API: %d %s", code, body)
		}
	}
	if code, body := get("/api/v1/agents/"+key, carol); code != 200 || !strings.Contains(body, `"name": "prod"`) {
		t.Errorf("carol, one agent: %d %s", code, body)
	}
	for _, path := range []string{"/api/v1/agents", "/api/v1/status"} {
		if code, body := get(path, dave); code != http.StatusUnauthorized {
			t.Errorf("GitLab user dave, who may reach no agent, on %s: %d %s, want 401", path, code, body)
		}
	}

	// The page's sign-in takes a personal access token too.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(e.obsURL()+"/login", url.Values{"token": {carol}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("sign-in with carol's personal access token: %s %v", resp.Status, resp.Cookies())
	}
	code, page := tu.Do(t, http.MethodGet, e.obsURL()+"/", nil, map[string]string{"Cookie": resp.Cookies()[0].String()})
	if code != 200 || !strings.Contains(string(page), "signed in as <b>carol</b> (GitLab)") || !strings.Contains(string(page), `id="agent-prod"`) {
		t.Errorf("page for carol: %d\n%s", code, page)
	}
	if e.kasLog.Contains(carol) {
		t.Error("kas log contains a personal access token")
	}

	// GitLab down: a token kas has no answer for cannot be checked (503,
	// not 401); carol's cached answer still serves.
	e.gl.SetDown(true)
	_, erin := e.gl.AddUser("erin", e.agent)
	if code, body := get("/api/v1/status", erin); code != http.StatusServiceUnavailable || !strings.Contains(body, "GitLab is unavailable") {
		t.Errorf("new token while GitLab is down: %d %s, want 503", code, body)
	}
	if code, body := get("/api/v1/status", carol); code != 200 {
		t.Errorf("carol while GitLab is down (cached answer): %d %s", code, body)
	}
}
