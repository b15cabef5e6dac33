package kas

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"kubetunnel/internal/gitlab"
	tu "kubetunnel/internal/testutil"
)

// TestGitLabRevokedTokenClosesConnections: a token revoked in GitLab
// closes the agent's open connections within about info_cache_ttl (not
// max_connection_age); the revoked token cannot reconnect and the agent's
// other token can.
func TestGitLabRevokedTokenClosesConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for token revalidation: not in -short")
	}
	const ttl = 1500 * time.Millisecond
	e := newGitLabEnv(t, ttl, 200*time.Millisecond)
	e.start()
	key := strconv.FormatInt(e.agent.ID, 10)
	a, err := e.dialToken(e.token)
	if err != nil {
		t.Fatal(err)
	}
	firstConfig(t, a)
	leaked := e.gl.IssueToken(e.agent)
	b, err := e.dialToken(leaked)
	if err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, setTimeout, "two connections", func() bool { return e.kas.ConnectedSessions(key) == 2 })

	e.gl.RevokeToken(leaked)
	revokedAt := time.Now()
	limit := ttl + revalidatePeriod(e.cfg) + 2*time.Second
	select {
	case <-b.sess.CloseChan():
	case <-time.After(limit):
		t.Fatalf("the connection with the revoked token is still open %v after revocation (info_cache_ttl %v)", limit, ttl)
	}
	t.Logf("revoked → connection closed: %v", time.Since(revokedAt))
	tu.Eventually(t, setTimeout, "no connection left", func() bool { return e.kas.ConnectedSessions(key) == 0 })
	if !e.kasLog.Contains("GitLab no longer accepts a token of this agent") || !e.kasLog.Contains("agent_id="+key) {
		t.Fatalf("kas log does not say why it closed the connections:\n%s", e.kasLog)
	}
	if _, err := e.dialToken(leaked); err == nil || !strings.Contains(err.Error(), "unknown agent token") {
		t.Fatalf("revoked token reconnects: %v", err)
	}
	if _, err := e.dialToken(e.token); err != nil {
		t.Fatalf("the agent's other token: %v", err)
	}
	if e.kasLog.Contains(leaked) || e.kasLog.Contains(e.token) {
		t.Fatal("kas logged a token")
	}
}

// TestGitLabOutageKeepsConnections: GitLab unreachable for several
// info_cache_ttl closes no connection.
func TestGitLabOutageKeepsConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("waits through a GitLab outage: not in -short")
	}
	const ttl = 400 * time.Millisecond
	e := newGitLabEnv(t, ttl, 100*time.Millisecond)
	e.start()
	key := strconv.FormatInt(e.agent.ID, 10)
	a, err := e.dialToken(e.token)
	if err != nil {
		t.Fatal(err)
	}
	firstConfig(t, a)
	e.gl.SetDown(true)
	select {
	case <-a.sess.CloseChan():
		t.Fatal("GitLab down closed the agent's connection")
	case <-time.After(5 * ttl):
	}
	if n := e.kas.ConnectedSessions(key); n != 1 {
		t.Fatalf("connected sessions during the outage: %d", n)
	}
	if e.kasLog.Contains("closing its connections") {
		t.Fatalf("kas closed connections during an outage:\n%s", e.kasLog)
	}
	e.gl.SetDown(false)
}

// fakeSessions records revoke calls.
type fakeSessions struct {
	mu      sync.Mutex
	keys    []string
	revoked []string
}

func (f *fakeSessions) Agents() []string { return f.keys }
func (f *fakeSessions) Revoke(k, _ string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, k)
	return 1
}

// TestRevalidateGuards: a refused token revokes its agent's sessions only
// when GitLab still accepts kas's JWT; GitLab refusing kas's JWT (wrong
// secret: 401 to every call) or being down revokes nothing.
func TestRevalidateGuards(t *testing.T) {
	const tok = "glagent-good"
	var mode atomic.Value // ok, revoked, jwt_refused, down
	mode.Store("ok")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := mode.Load().(string)
		switch {
		case m == "down":
			http.Error(w, "bad gateway", http.StatusBadGateway)
		case m == "jwt_refused":
			http.Error(w, `{"message":"401 Unauthorized"}`, http.StatusUnauthorized)
		case r.URL.Path == gitlab.PathUsageMetrics:
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == gitlab.PathAgentInfo && m == "ok" && r.Header.Get("Authorization") == "Bearer "+tok:
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"project_id":3,"agent_id":7,"agent_name":"prod","gitaly_repository":{"gl_project_path":"group/agents"},"default_branch":"main"}`))
		default:
			http.Error(w, `{"message":"401 Unauthorized"}`, http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	clk := clocktesting.NewFakeClock(time.Now())
	c, err := gitlab.New(gitlab.Config{Address: u, Secret: []byte(strings.Repeat("k", 32)), HTTPClient: srv.Client(),
		InfoCacheTTL: time.Millisecond, InfoCacheErrorTTL: time.Millisecond, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	logger, logs := tu.NewLogger(t)
	r := newGitLabRegistry(c, logger)
	ctx := context.Background()
	if _, err := r.AuthenticateAgent(ctx, tok); err != nil {
		t.Fatal(err)
	}
	sessions := &fakeSessions{keys: []string{"7"}}
	for _, m := range []string{"ok", "down", "jwt_refused"} {
		mode.Store(m)
		clk.Step(2 * time.Millisecond) // cached answers expire
		r.revalidateOnce(ctx, sessions)
		if len(sessions.revoked) != 0 {
			t.Fatalf("%s: sessions revoked", m)
		}
	}
	if !logs.Contains("kas cannot confirm that GitLab accepts its own JWT") {
		t.Fatalf("no log line for the JWT refusal:\n%s", logs)
	}
	if len(r.tokensOf("7")) != 1 {
		t.Fatal("a token was forgotten while kas's JWT was refused")
	}
	mode.Store("revoked")
	clk.Step(2 * time.Millisecond)
	r.revalidateOnce(ctx, sessions)
	if len(sessions.revoked) != 1 || sessions.revoked[0] != "7" || len(r.tokensOf("7")) != 0 {
		t.Fatalf("revoked token: revoked %v, tokens left %d", sessions.revoked, len(r.tokensOf("7")))
	}
	// Once forgotten, the token is not asked about again.
	r.revalidateOnce(ctx, sessions)
	if len(sessions.revoked) != 1 {
		t.Fatalf("revoked twice: %v", sessions.revoked)
	}
	// A token the manifest path found refused (project_info 401) and
	// forgot counts as well.
	mode.Store("ok")
	clk.Step(2 * time.Millisecond)
	if _, err := r.AuthenticateAgent(ctx, tok); err != nil {
		t.Fatal(err)
	}
	r.forget("7", tok)
	r.revalidateOnce(ctx, sessions)
	if len(sessions.revoked) != 2 {
		t.Fatalf("token forgotten by project_info: revoked %v", sessions.revoked)
	}
}
