package gitlabaccess_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/internal/testutil/fakegitlab"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable time for the Authorizer's cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup starts a fake GitLab and an Authorizer on kas's real GitLab
// client pointed at it.
func setup(t *testing.T, mod func(*gitlabaccess.Config)) (*fakegitlab.Server, *gitlabaccess.Authorizer, *clock) {
	t.Helper()
	gl := fakegitlab.New(t)
	u, _ := url.Parse(gl.URL)
	client, err := gitlab.New(gitlab.Config{Address: u, Secret: gl.Secret, HTTPClient: gl.Client(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	cfg := gitlabaccess.Config{GitLab: client, Now: clk.now}
	if mod != nil {
		mod(&cfg)
	}
	a, err := gitlabaccess.NewAuthorizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gl.Client().CloseIdleConnections)
	return gl, a, clk
}

// parse reads a credential the way kasproxy will: from a request.
func parse(t *testing.T, header http.Header) gitlabaccess.Credential {
	t.Helper()
	r, _ := http.NewRequest(http.MethodGet, "https://kas.invalid/api/v1/pods", nil)
	r.Header = header
	c, err := gitlabaccess.ParseCredential(r)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func bearer(kind string, agentID int64, tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + kind + ":" + itoa(agentID) + ":" + tok}}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestAuthorizeCIJob(t *testing.T) {
	gl, a, clk := setup(t, nil)
	ctx := context.Background()
	cfgProj := gl.AddProject("group/agents", nil)
	app := gl.AddProject("group/app", nil)
	prod := gl.AddAgent("prod", cfgProj)
	other := gl.AddAgent("other", cfgProj)
	job, tok := gl.AddJob(app, "alice", prod)
	gl.ConfigureJob(job, func(j *fakegitlab.Job) {
		j.Groups = []int64{23, 25}
		j.Environment = &gitlab.Environment{Slug: "prod", Tier: "production"}
		j.AccessAs = json.RawMessage(`{"ci_job":{}}`)
	})

	g, err := a.Authorize(ctx, parse(t, bearer("ci", prod.ID, tok)))
	if err != nil {
		t.Fatal(err)
	}
	if g.Kind != gitlabaccess.KindCIJob || g.AgentID != prod.ID || g.ConfigProjectID != cfgProj.ID || g.JobID != job.ID ||
		g.ProjectID != app.ID || g.Username != "alice" || g.DefaultNamespace != "default" || g.Identity == nil {
		t.Fatalf("grant %+v", g)
	}
	p := itoa(app.ID)
	wantGroups := []string{"gitlab:ci_job", "gitlab:group:23", "gitlab:group_env_tier:23:production", "gitlab:group:25", "gitlab:group_env_tier:25:production",
		"gitlab:project:" + p, "gitlab:project_env:" + p + ":prod", "gitlab:project_env_tier:" + p + ":production"}
	if g.Identity.User != "gitlab:ci_job:"+itoa(job.ID) || strings.Join(g.Identity.Groups, ",") != strings.Join(wantGroups, ",") {
		t.Fatalf("identity %+v", g.Identity)
	}
	if calls := gl.Calls(gitlab.PathAllowedAgents); calls != 1 {
		t.Fatalf("allowed_agents called %d times", calls)
	}

	// The same job for an agent it may not use: 403, from the cached answer.
	_, err = a.Authorize(ctx, parse(t, bearer("ci", other.ID, tok)))
	if !errors.Is(err, gitlabaccess.ErrForbidden) || gitlabaccess.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("other agent: %v", err)
	}
	if calls := gl.Calls(gitlab.PathAllowedAgents); calls != 1 {
		t.Fatalf("allowed_agents called %d times, the answer is cached", calls)
	}

	// A cached yes is used while GitLab is down, within its TTL only: a
	// finished job must not keep access through an outage.
	gl.SetDown(true)
	clk.add(gitlabaccess.DefaultCacheTTL - time.Second)
	if _, err := a.Authorize(ctx, parse(t, bearer("ci", prod.ID, tok))); err != nil {
		t.Fatalf("cached yes during an outage: %v", err)
	}
	clk.add(2 * time.Second)
	_, err = a.Authorize(ctx, parse(t, bearer("ci", prod.ID, tok)))
	if !errors.Is(err, gitlabaccess.ErrUnavailable) || gitlabaccess.StatusCode(err) != http.StatusServiceUnavailable {
		t.Fatalf("expired yes during an outage: %v, want ErrUnavailable", err)
	}
	// The 503 says why.
	if !strings.Contains(err.Error(), "502") {
		t.Fatalf("503 reason %q does not say what GitLab answered", err)
	}
	gl.SetDown(false)
	if _, err := a.Authorize(ctx, parse(t, bearer("ci", prod.ID, tok))); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

func TestAuthorizeCIJobAccessAs(t *testing.T) {
	gl, a, _ := setup(t, nil)
	cfgProj := gl.AddProject("group/agents", nil)
	ag := gl.AddAgent("prod", cfgProj)
	for _, tc := range []struct {
		accessAs json.RawMessage
		user     string // "" for the agent's own identity
		err      error
	}{
		{nil, "", nil},
		{json.RawMessage(`{"agent":{}}`), "", nil},
		{json.RawMessage(`{"impersonate":{"username":"deployer"}}`), "deployer", nil},
		{json.RawMessage(`{"ci_user":{}}`), "", gitlabaccess.ErrAccessAs},
	} {
		job, tok := gl.AddJob(gl.AddProject("group/app"+itoa(int64(len(tc.accessAs))), nil), "alice", ag)
		gl.ConfigureJob(job, func(j *fakegitlab.Job) { j.AccessAs = tc.accessAs })
		g, err := a.Authorize(context.Background(), parse(t, bearer("ci", ag.ID, tok)))
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Fatalf("access_as %s: %v, want %v", tc.accessAs, err, tc.err)
		}
		if err != nil {
			continue
		}
		if (tc.user == "") != (g.Identity == nil) || (g.Identity != nil && g.Identity.User != tc.user) {
			t.Fatalf("access_as %s: identity %+v", tc.accessAs, g.Identity)
		}
	}
}

func TestAuthorizeUnknownJobToken(t *testing.T) {
	gl, a, clk := setup(t, nil)
	ctx := context.Background()
	cred := parse(t, bearer("ci", 5, "glcbt-unknown"))
	_, err := a.Authorize(ctx, cred)
	if !errors.Is(err, gitlabaccess.ErrUnauthorized) || gitlabaccess.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("unknown job token: %v", err)
	}
	// The refusal is remembered for CacheErrorTTL: GitLab is not asked
	// again (down, it would make this a 503).
	gl.SetDown(true)
	clk.add(gitlabaccess.DefaultCacheErrorTTL - time.Second)
	if _, err := a.Authorize(ctx, cred); !errors.Is(err, gitlabaccess.ErrUnauthorized) {
		t.Fatalf("cached refusal: %v", err)
	}
	clk.add(2 * time.Second)
	if _, err := a.Authorize(ctx, cred); !errors.Is(err, gitlabaccess.ErrUnavailable) {
		t.Fatalf("expired refusal during an outage: %v, want ErrUnavailable", err)
	}
}

func TestAuthorizeUnavailableNothingCached(t *testing.T) {
	gl, a, _ := setup(t, nil)
	gl.SetDown(true)
	for _, h := range []http.Header{
		bearer("ci", 5, "glcbt-x"),
		bearer("pat", 5, "glpat-x"),
		{"Cookie": {"_gitlab_kas=v"}, "Gitlab-Agent-Id": {"5"}, "X-Csrf-Token": {"t"}},
	} {
		_, err := a.Authorize(context.Background(), parse(t, h))
		if !errors.Is(err, gitlabaccess.ErrUnavailable) || gitlabaccess.StatusCode(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "502") {
			t.Fatalf("%v: %v, want ErrUnavailable with GitLab's answer", h, err)
		}
		if strings.Contains(err.Error(), "glcbt-x") || strings.Contains(err.Error(), "glpat-x") {
			t.Fatalf("error %q carries the token", err)
		}
	}
	// Outages are not cached: once GitLab is back the answer is GitLab's.
	gl.SetDown(false)
	if _, err := a.Authorize(context.Background(), parse(t, bearer("ci", 5, "glcbt-x"))); !errors.Is(err, gitlabaccess.ErrUnauthorized) {
		t.Fatalf("after the outage: %v", err)
	}
}

func TestAuthorizePAT(t *testing.T) {
	gl, a, _ := setup(t, nil)
	ctx := context.Background()
	cfgProj := gl.AddProject("group/agents", nil)
	prod := gl.AddAgent("prod", cfgProj)
	other := gl.AddAgent("other", cfgProj)
	alice, tok := gl.AddUser("alice", prod)
	gl.ConfigureUser(alice, func(u *fakegitlab.User) {
		u.AsUser = true
		u.Projects = []gitlab.RoleGrant{{ID: gitlab.ID(cfgProj.ID), Roles: []string{"developer"}}}
		u.Groups = []gitlab.RoleGrant{{ID: 23, Roles: []string{"maintainer"}}}
	})
	g, err := a.Authorize(ctx, parse(t, bearer("pat", prod.ID, tok)))
	if err != nil {
		t.Fatal(err)
	}
	want := "gitlab:user,gitlab:project_role:" + itoa(cfgProj.ID) + ":developer,gitlab:group_role:23:maintainer"
	if g.Kind != gitlabaccess.KindPAT || g.Username != "alice" || g.UserID != alice.ID || g.Identity == nil ||
		g.Identity.User != "gitlab:user:alice" || strings.Join(g.Identity.Groups, ",") != want ||
		g.Identity.ExtraMap()["agent.gitlab.com/access_type"][0] != "personal_access_token" {
		t.Fatalf("grant %+v identity %+v", g, g.Identity)
	}
	// GitLab's refusals are all 401 for users, as upstream.
	for name, h := range map[string]http.Header{
		"agent not in user_access": bearer("pat", other.ID, tok),
		"unknown token":            bearer("pat", prod.ID, "glpat-nope"),
	} {
		_, err := a.Authorize(ctx, parse(t, h))
		if !errors.Is(err, gitlabaccess.ErrUnauthorized) || gitlabaccess.StatusCode(err) != 401 {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(err.Error(), "glpat-") {
			t.Fatalf("%s: error %q carries the token", name, err)
		}
	}
	if calls := gl.Calls(gitlab.PathAuthorizeProxyUser); calls != 3 {
		t.Fatalf("authorize_proxy_user called %d times, want 3", calls)
	}
	if _, err := a.Authorize(ctx, parse(t, bearer("pat", prod.ID, tok))); err != nil {
		t.Fatal(err)
	}
	if calls := gl.Calls(gitlab.PathAuthorizeProxyUser); calls != 3 {
		t.Fatalf("authorize_proxy_user called %d times: the yes is cached", calls)
	}
}

func TestAuthorizeSessionCookie(t *testing.T) {
	gl, a, _ := setup(t, nil)
	ctx := context.Background()
	cfgProj := gl.AddProject("group/agents", nil)
	prod := gl.AddAgent("prod", cfgProj)
	alice, _ := gl.AddUser("alice", prod)
	cookie, csrf := gl.AddSession(alice)

	// From headers, as GitLab's UI sends it.
	g, err := a.Authorize(ctx, parse(t, http.Header{"Cookie": {"_gitlab_kas=" + cookie}, "Gitlab-Agent-Id": {itoa(prod.ID)}, "X-Csrf-Token": {csrf}}))
	if err != nil {
		t.Fatal(err)
	}
	if g.Kind != gitlabaccess.KindSessionCookie || g.Username != "alice" || g.Identity != nil {
		t.Fatalf("grant %+v (access_as agent: no identity)", g)
	}
	// From query parameters, as a browser's WebSocket request sends it.
	r, _ := http.NewRequest(http.MethodGet, "https://kas.invalid/api/v1/namespaces/x/pods/p/exec?command=sh&gitlab-agent-id="+itoa(prod.ID)+"&gitlab-csrf-token="+url.QueryEscape(csrf), nil)
	r.Header.Set("Cookie", "_gitlab_kas="+cookie)
	c, err := gitlabaccess.ParseCredential(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authorize(ctx, c); err != nil {
		t.Fatalf("query form: %v", err)
	}
	// A wrong CSRF token is refused, whatever was cached for the right one.
	_, err = a.Authorize(ctx, parse(t, http.Header{"Cookie": {"_gitlab_kas=" + cookie}, "Gitlab-Agent-Id": {itoa(prod.ID)}, "X-Csrf-Token": {"forged"}}))
	if !errors.Is(err, gitlabaccess.ErrUnauthorized) || gitlabaccess.StatusCode(err) != 401 {
		t.Fatalf("wrong CSRF token: %v", err)
	}
	// The cookie as a PAT is not a PAT.
	if _, err := a.Authorize(ctx, parse(t, bearer("pat", prod.ID, cookie))); !errors.Is(err, gitlabaccess.ErrUnauthorized) {
		t.Fatalf("cookie sent as a PAT: %v", err)
	}
}

// Concurrent requests with one credential (kubectl's discovery burst)
// make one call to GitLab.
func TestAuthorizeSharesOneCall(t *testing.T) {
	gl, a, _ := setup(t, nil)
	cfgProj := gl.AddProject("group/agents", nil)
	prod := gl.AddAgent("prod", cfgProj)
	_, tok := gl.AddJob(gl.AddProject("group/app", nil), "alice", prod)
	cred := parse(t, bearer("ci", prod.ID, tok))
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 20 {
		wg.Go(func() {
			if _, err := a.Authorize(context.Background(), cred); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of 20 failed", failed.Load())
	}
	if calls := gl.Calls(gitlab.PathAllowedAgents); calls != 1 {
		t.Fatalf("allowed_agents called %d times for 20 concurrent requests", calls)
	}
}

// Attack: a flood of random credentials does not grow the cache past its
// bound, and a legitimate job is still served during and after it.
func TestAuthorizeCacheBoundUnderFlood(t *testing.T) {
	const max = 50
	gl, a, _ := setup(t, func(c *gitlabaccess.Config) { c.MaxCacheEntries = max })
	cfgProj := gl.AddProject("group/agents", nil)
	prod := gl.AddAgent("prod", cfgProj)
	_, tok := gl.AddJob(gl.AddProject("group/app", nil), "alice", prod)
	good := parse(t, bearer("ci", prod.ID, tok))
	ctx := context.Background()
	for i := range 400 {
		kind := []string{"ci", "pat"}[i%2]
		if _, err := a.Authorize(ctx, parse(t, bearer(kind, prod.ID, "flood-"+itoa(int64(i))))); !errors.Is(err, gitlabaccess.ErrUnauthorized) {
			t.Fatalf("flood credential %d: %v", i, err)
		}
		if i%50 == 0 {
			if _, err := a.Authorize(ctx, good); err != nil {
				t.Fatalf("legitimate job during the flood: %v", err)
			}
		}
		if n := a.CacheLen(); n > 2*max {
			t.Fatalf("cache holds %d entries, bound is %d per cache", n, max)
		}
	}
	if _, err := a.Authorize(ctx, good); err != nil {
		t.Fatalf("legitimate job after the flood: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := gitlabaccess.NewAuthorizer(gitlabaccess.Config{}); err == nil {
		t.Fatal("no GitLab client accepted")
	}
	gl, _, _ := setup(t, nil)
	u, _ := url.Parse(gl.URL)
	client, _ := gitlab.New(gitlab.Config{Address: u, Secret: gl.Secret})
	if _, err := gitlabaccess.NewAuthorizer(gitlabaccess.Config{GitLab: client, CacheTTL: -time.Second}); err == nil || !strings.Contains(err.Error(), "TTL") {
		t.Fatalf("negative TTL: %v", err)
	}
}
