package gitlab_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/testutil/fakegitlab"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newClient(t *testing.T, gl *fakegitlab.Server, mod func(*gitlab.Config)) *gitlab.Client {
	t.Helper()
	u, _ := url.Parse(gl.URL)
	cfg := gitlab.Config{Address: u, Secret: gl.Secret, HTTPClient: gl.Client()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := gitlab.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAgentInfo(t *testing.T) {
	gl := fakegitlab.New(t)
	cfgProj := gl.AddProject("group/agents", nil)
	a := gl.AddAgent("prod", cfgProj)
	tok := gl.IssueToken(a)
	c := newClient(t, gl, nil)
	ctx := context.Background()

	info, err := c.GetAgentInfo(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if int64(info.AgentID) != a.ID || info.AgentName != "prod" || info.ConfigProject() != "group/agents" || int64(info.ProjectID) != cfgProj.ID || info.Stale {
		t.Fatalf("agent_info = %+v", info.AgentInfo)
	}
	if _, err := c.GetAgentInfo(ctx, "glagent-nope"); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("unknown token: %v, want ErrUnauthorized", err)
	}
	if gl.JWTFailures() != 0 {
		t.Fatalf("the fake GitLab refused %d of kas's JWTs", gl.JWTFailures())
	}
}

func TestWrongSecretRefused(t *testing.T) {
	gl := fakegitlab.New(t)
	a := gl.AddAgent("prod", gl.AddProject("group/agents", nil))
	tok := gl.IssueToken(a)
	c := newClient(t, gl, func(c *gitlab.Config) { c.Secret = []byte(strings.Repeat("w", 32)) })
	if _, err := c.GetAgentInfo(context.Background(), tok); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("wrong secret: %v, want ErrUnauthorized", err)
	}
	if gl.JWTFailures() != 1 {
		t.Fatalf("JWT failures = %d, want 1", gl.JWTFailures())
	}
}

// TestProbeJWT: GitLab accepting kas's JWT, refusing it (wrong secret),
// a GitLab that wants other usage fields (400, still the JWT accepted)
// and GitLab down are told apart.
func TestProbeJWT(t *testing.T) {
	gl := fakegitlab.New(t)
	ctx := context.Background()
	if err := newClient(t, gl, nil).ProbeJWT(ctx); err != nil {
		t.Fatalf("right secret: %v", err)
	}
	wrong := newClient(t, gl, func(c *gitlab.Config) { c.Secret = []byte(strings.Repeat("w", 32)) })
	if err := wrong.ProbeJWT(ctx); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("wrong secret: %v, want ErrUnauthorized", err)
	}
	gl.SetDown(true)
	if err := newClient(t, gl, nil).ProbeJWT(ctx); !errors.Is(err, gitlab.ErrUnavailable) {
		t.Fatalf("GitLab down: %v, want ErrUnavailable", err)
	}
	gl.SetDown(false)
	if len(gl.Usage()) != 1 || !gl.Usage()[0].IsEmpty() {
		t.Fatalf("usage_metrics got %+v, want one empty report (the probe)", gl.Usage())
	}

	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != gitlab.PathUsageMetrics || gitlab.VerifyJWT(gl.Secret, r.Header.Get(gitlab.HeaderKasAPIRequest), gitlab.IssuerKas, gitlab.AudienceGitLab, time.Now()) != nil {
			http.Error(w, `{"message":"401 Unauthorized"}`, http.StatusUnauthorized)
			return
		}
		http.Error(w, `{"error":"gitops_sync_count is missing"}`, http.StatusBadRequest)
	}))
	defer old.Close()
	u, _ := url.Parse(old.URL)
	c, err := gitlab.New(gitlab.Config{Address: u, Secret: gl.Secret, HTTPClient: old.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ProbeJWT(ctx); err != nil {
		t.Fatalf("400 after the JWT check: %v, want accepted", err)
	}
	old.CloseClientConnections()
}

// TestAgentInfoCache: a good answer is trusted for info_cache_ttl (a
// revoked token still works that long, and no more), a refusal is
// remembered for info_cache_error_ttl, and during an outage the last good
// answer is used. The cache runs on a fake clock stepped to each edge;
// the steps stay within the JWT's leeway, as the fake GitLab checks the
// JWT's times against the real clock.
func TestAgentInfoCache(t *testing.T) {
	gl := fakegitlab.New(t)
	a := gl.AddAgent("prod", gl.AddProject("group/agents", nil))
	tok := gl.IssueToken(a)
	const ttl, errTTL = 600 * time.Millisecond, 300 * time.Millisecond
	clk := clocktesting.NewFakeClock(time.Now())
	c := newClient(t, gl, func(c *gitlab.Config) { c.InfoCacheTTL, c.InfoCacheErrorTTL, c.Now = ttl, errTTL, clk.Now })
	ctx := context.Background()

	if _, err := c.GetAgentInfo(ctx, tok); err != nil {
		t.Fatal(err)
	}
	gl.RevokeToken(tok)
	clk.Step(ttl - time.Nanosecond)
	if _, err := c.GetAgentInfo(ctx, tok); err != nil {
		t.Fatalf("revoked token refused within info_cache_ttl: %v", err)
	}
	if n := gl.Calls(gitlab.PathAgentInfo); n != 1 {
		t.Fatalf("agent_info calls = %d, want 1 (cached)", n)
	}
	clk.Step(time.Nanosecond)
	if _, err := c.GetAgentInfo(ctx, tok); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("revoked token after info_cache_ttl: %v, want ErrUnauthorized", err)
	}
	// The refusal is cached: GitLab is not asked again for a while.
	clk.Step(errTTL - time.Nanosecond)
	if _, err := c.GetAgentInfo(ctx, tok); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("cached refusal: %v", err)
	}
	if n := gl.Calls(gitlab.PathAgentInfo); n != 2 {
		t.Fatalf("agent_info calls = %d, want 2", n)
	}
	clk.Step(time.Nanosecond)
	_, _ = c.GetAgentInfo(ctx, tok)
	if n := gl.Calls(gitlab.PathAgentInfo); n != 3 {
		t.Fatalf("agent_info calls after info_cache_error_ttl = %d, want 3", n)
	}
}

func TestAgentInfoOutage(t *testing.T) {
	gl := fakegitlab.New(t)
	a := gl.AddAgent("prod", gl.AddProject("group/agents", nil))
	known, unknown := gl.IssueToken(a), gl.IssueToken(a)
	clk := clocktesting.NewFakeClock(time.Now())
	c := newClient(t, gl, func(c *gitlab.Config) { c.InfoCacheTTL, c.Now = time.Millisecond, clk.Now })
	ctx := context.Background()
	if _, err := c.GetAgentInfo(ctx, known); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Millisecond) // the good answer expires
	gl.SetDown(true)
	info, err := c.GetAgentInfo(ctx, known)
	if !errors.Is(err, gitlab.ErrUnavailable) || info.AgentInfo == nil || !info.Stale || info.AgentName != "prod" {
		t.Fatalf("known agent during outage: %+v, %v; want the last good answer, stale, with ErrUnavailable", info, err)
	}
	info, err = c.GetAgentInfo(ctx, unknown)
	if !errors.Is(err, gitlab.ErrUnavailable) || info.AgentInfo != nil {
		t.Fatalf("new token during outage: %+v, %v; want no answer and ErrUnavailable", info, err)
	}
	if gitlab.IsRefusal(err) {
		t.Fatal("an outage is a refusal")
	}
}

func TestProjectInfo(t *testing.T) {
	gl := fakegitlab.New(t)
	cfgProj := gl.AddProject("group/agents", nil)
	allowed := gl.AddProject("group/apps", nil)
	gl.AddProject("other/secret", nil)
	a := gl.AddAgent("prod", cfgProj)
	gl.Allow(a, allowed)
	tok := gl.IssueToken(a)
	c := newClient(t, gl, nil)
	ctx := context.Background()

	p, err := c.GetProjectInfo(ctx, tok, "group/apps")
	if err != nil || int64(p.ProjectID) != allowed.ID || p.FullPath() != "group/apps" || p.DefaultBranch != "main" {
		t.Fatalf("allowed project: %+v, %v", p, err)
	}
	if p, err := c.GetProjectInfo(ctx, tok, strconv.FormatInt(allowed.ID, 10)); err != nil || p.FullPath() != "group/apps" {
		t.Fatalf("by numeric id: %+v, %v", p, err)
	}
	if _, err := c.GetProjectInfo(ctx, tok, "other/secret"); !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("forbidden project: %v, want ErrNotFound", err)
	}
	if _, err := c.GetProjectInfo(ctx, "glagent-bad", "group/apps"); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("bad token: %v, want ErrUnauthorized", err)
	}
}

func TestPosts(t *testing.T) {
	gl := fakegitlab.New(t)
	c := newClient(t, gl, nil)
	ctx := context.Background()
	if err := c.PostAgentConfiguration(ctx, 7, json.RawMessage(`{"gitops":{}}`)); err != nil {
		t.Fatal(err)
	}
	got := gl.AgentConfigurations()
	if len(got) != 1 || got[0].AgentID != 7 || string(got[0].AgentConfig) != `{"gitops":{}}` {
		t.Fatalf("agent_configuration received %+v", got)
	}
	if err := c.SendUsage(ctx, &gitlab.UsageData{Counters: map[string]int64{"k8s_api_proxy_request": 0}}); err != nil {
		t.Fatal(err)
	}
	if n := gl.Calls(gitlab.PathUsageMetrics); n != 0 {
		t.Fatalf("an empty usage report was sent (%d calls)", n)
	}
	if err := c.SendUsage(ctx, &gitlab.UsageData{Counters: map[string]int64{"k8s_api_proxy_request": 3}}); err != nil {
		t.Fatal(err)
	}
	if u := gl.Usage(); len(u) != 1 || u[0].Counters["k8s_api_proxy_request"] != 3 {
		t.Fatalf("usage_metrics received %+v", u)
	}
	gl.SetDown(true)
	if err := c.PostAgentConfiguration(ctx, 7, json.RawMessage(`{}`)); !errors.Is(err, gitlab.ErrUnavailable) {
		t.Fatalf("GitLab down: %v, want ErrUnavailable", err)
	}
}

// TestCacheBounded: refusals of random tokens (an attacker guessing) do
// not grow the cache past its bound, and a good agent is still served.
func TestCacheBounded(t *testing.T) {
	gl := fakegitlab.New(t)
	a := gl.AddAgent("prod", gl.AddProject("group/agents", nil))
	tok := gl.IssueToken(a)
	const max = 16
	c := newClient(t, gl, func(c *gitlab.Config) { c.MaxCacheEntries = max })
	ctx := context.Background()
	for i := range 500 {
		if _, err := c.GetAgentInfo(ctx, "guess-"+strconv.Itoa(i)); !errors.Is(err, gitlab.ErrUnauthorized) {
			t.Fatal(err)
		}
		if i%50 == 0 {
			if _, err := c.GetAgentInfo(ctx, tok); err != nil {
				t.Fatalf("good agent during the attack: %v", err)
			}
		}
	}
	if n := c.Len(); n > max {
		t.Fatalf("cache holds %d entries, bound is %d", n, max)
	}
}

func TestNewChecksConfig(t *testing.T) {
	u, _ := url.Parse("https://gitlab.example.com")
	if _, err := gitlab.New(gitlab.Config{Address: u}); err == nil {
		t.Fatal("no secret accepted")
	}
	if _, err := gitlab.New(gitlab.Config{Secret: []byte(base64.StdEncoding.EncodeToString(make([]byte, 32)))}); err == nil {
		t.Fatal("no address accepted")
	}
}

// TestAnswerSizeBounded: an answer over 1 MiB is not read whole and is
// ErrUnavailable; a normal answer after it is fine.
func TestAnswerSizeBounded(t *testing.T) {
	var big atomic.Bool
	big.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if big.Load() {
			w.Write([]byte(`{"agent_name":"`))
			w.Write(bytes.Repeat([]byte("a"), 2<<20))
			return
		}
		w.Write([]byte(`{"project_id":1,"agent_id":2,"agent_name":"a","gitaly_repository":{"gl_project_path":"g/p"}}`))
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	c, err := gitlab.New(gitlab.Config{Address: u, Secret: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAgentInfo(context.Background(), "t1"); !errors.Is(err, gitlab.ErrUnavailable) || !strings.Contains(err.Error(), "over") {
		t.Fatalf("2 MiB answer: %v", err)
	}
	big.Store(false)
	if _, err := c.GetAgentInfo(context.Background(), "t2"); err != nil {
		t.Fatal(err)
	}
}

func TestAllowedAgentsForJob(t *testing.T) {
	gl := fakegitlab.New(t)
	cfgProj := gl.AddProject("group/agents", nil)
	a := gl.AddAgent("prod", cfgProj)
	job, tok := gl.AddJob(gl.AddProject("group/app", nil), "alice", a)
	// The fake refuses kas's JWT on this public endpoint.
	c := newClient(t, gl, nil)
	got, err := c.GetAllowedAgentsForJob(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if int64(got.Job.ID) != job.ID || got.User.Username != "alice" || len(got.AllowedAgents) != 1 ||
		int64(got.AllowedAgents[0].ID) != a.ID || int64(got.AllowedAgents[0].ConfigProject.ID) != cfgProj.ID {
		t.Fatalf("allowed_agents = %+v", got)
	}
	if _, err := c.GetAllowedAgentsForJob(context.Background(), "glcbt-wrong"); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("wrong job token: %v", err)
	}
}

func TestAuthorizeProxyUser(t *testing.T) {
	gl := fakegitlab.New(t)
	a := gl.AddAgent("prod", gl.AddProject("group/agents", nil))
	other := gl.AddAgent("other", gl.AddProject("group/other", nil))
	u, pat := gl.AddUser("alice", a)
	c := newClient(t, gl, nil)
	ctx := context.Background()
	got, err := c.AuthorizeProxyUser(ctx, gitlab.AuthorizeProxyUserRequest{AgentID: a.ID, AccessType: gitlab.AccessTypePersonalAccessToken, AccessKey: pat})
	if err != nil {
		t.Fatal(err)
	}
	if int64(got.Agent.ID) != a.ID || int64(got.User.ID) != u.ID || got.User.Username != "alice" || got.AccessAs.Agent == nil {
		t.Fatalf("authorize_proxy_user = %+v", got)
	}
	if _, err := c.AuthorizeProxyUser(ctx, gitlab.AuthorizeProxyUserRequest{AgentID: other.ID, AccessType: gitlab.AccessTypePersonalAccessToken, AccessKey: pat}); !errors.Is(err, gitlab.ErrForbidden) {
		t.Fatalf("agent the user may not reach: %v", err)
	}
	if _, err := c.AuthorizeProxyUser(ctx, gitlab.AuthorizeProxyUserRequest{AgentID: a.ID, AccessType: gitlab.AccessTypePersonalAccessToken, AccessKey: "glpat-wrong"}); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
	if gl.JWTFailures() != 0 {
		t.Fatal("JWT refused")
	}
}

// BenchmarkAgentInfo: a cached answer against a call to (the fake) GitLab
// on loopback over TLS.
func BenchmarkAgentInfo(b *testing.B) {
	gl := fakegitlab.New(b)
	tok := gl.IssueToken(gl.AddAgent("prod", gl.AddProject("group/agents", nil)))
	u, _ := url.Parse(gl.URL)
	for _, c := range []struct {
		name string
		ttl  time.Duration
	}{{"cached", time.Hour}, {"uncached", time.Nanosecond}} {
		b.Run(c.name, func(b *testing.B) {
			cl, err := gitlab.New(gitlab.Config{Address: u, Secret: gl.Secret, HTTPClient: gl.Client(), InfoCacheTTL: c.ttl})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := cl.GetAgentInfo(context.Background(), tok); err != nil && !errors.Is(err, gitlab.ErrUnavailable) {
					b.Fatal(err)
				}
			}
		})
	}
}
