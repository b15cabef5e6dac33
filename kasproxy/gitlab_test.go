package kasproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/tunnel"
)

// fakeAuthorizer answers by the credential's token.
type fakeAuthorizer struct{}

func (fakeAuthorizer) Authorize(_ context.Context, c gitlabaccess.Credential) (*gitlabaccess.Grant, error) {
	switch c.Token {
	case "job-ok":
		return &gitlabaccess.Grant{Kind: c.Kind, AgentID: c.AgentID, JobID: 42, Username: "bob",
			Identity: &gitlabaccess.Identity{User: "gitlab:ci_job:42", Groups: []string{"gitlab:ci_job"}}}, nil
	case "job-agent":
		return &gitlabaccess.Grant{Kind: c.Kind, AgentID: c.AgentID, JobID: 43, Username: "bob"}, nil
	case "job-other-agent":
		return nil, fmt.Errorf("%w: agent %d", gitlabaccess.ErrForbidden, c.AgentID)
	case "gitlab-down":
		return nil, fmt.Errorf("%w: allowed_agents: 502", gitlabaccess.ErrUnavailable)
	}
	return nil, gitlabaccess.ErrUnauthorized
}

// recordingTunnels answers every request itself and keeps what it got.
type recordingTunnels struct {
	mu     sync.Mutex
	agents []string
	reqs   []*http.Request
}

func (rt *recordingTunnels) RoundTripper(agent string) (http.RoundTripper, error) {
	return RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
		rt.mu.Lock()
		rt.agents = append(rt.agents, agent)
		rt.reqs = append(rt.reqs, r)
		rt.mu.Unlock()
		h := http.Header{"Content-Type": {"application/json"}, "Access-Control-Allow-Origin": {"*"}}
		return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader("{}")), Request: r}, nil
	}), nil
}

type staticUsers struct{}

func (staticUsers) AuthenticateUser(_ context.Context, token string) (User, error) {
	if token == "static" {
		return User{Name: "alice", Agents: []string{"prod"}}, nil
	}
	return User{}, ErrUnauthenticated
}

func TestGitLabCallers(t *testing.T) {
	cors, err := gitlabaccess.NewCORS("https://gitlab.example.com")
	if err != nil {
		t.Fatal(err)
	}
	tun := &recordingTunnels{}
	p := New(Config{Users: staticUsers{}, Tunnels: tun,
		GitLab: &GitLabAccess{Authorizer: fakeAuthorizer{}, CORS: cors, PathPrefix: "/k8s-proxy/"}})
	do := func(method, target string, hdr map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		return w
	}
	last := func() (string, *http.Request) {
		tun.mu.Lock()
		defer tun.mu.Unlock()
		return tun.agents[len(tun.agents)-1], tun.reqs[len(tun.reqs)-1]
	}

	// A CI job: routed to the agent of the credential, identity sent,
	// credentials gone, the cluster's CORS headers dropped.
	w := do("GET", "/k8s-proxy/api/v1/pods?gitlab-agent-id=7&limit=1", map[string]string{"Authorization": "Bearer ci:7:job-ok", "Kas-Gitlab-Identity": "forged"})
	if w.Code != 200 {
		t.Fatalf("ci job: %d %s", w.Code, w.Body)
	}
	agent, out := last()
	if agent != "7" || out.URL.Path != "/api/v1/pods" || out.URL.RawQuery != "limit=1" {
		t.Fatalf("routed to %q %s?%s", agent, out.URL.Path, out.URL.RawQuery)
	}
	if out.Header.Get("Authorization") != "" {
		t.Fatal("Authorization forwarded")
	}
	id, err := gitlabaccess.ParseIdentityHeader(out.Header.Get(tunnel.HeaderGitLabIdentity))
	if err != nil || id.User != "gitlab:ci_job:42" {
		t.Fatalf("identity header: %v %+v", err, id)
	}
	if w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("the cluster's CORS header reached the caller")
	}
	// access_as agent: the header says so.
	if w := do("GET", "/k8s-proxy/version", map[string]string{"Authorization": "Bearer ci:7:job-agent"}); w.Code != 200 {
		t.Fatalf("access_as agent: %d", w.Code)
	}
	if _, out := last(); out.Header.Get(tunnel.HeaderGitLabIdentity) != tunnel.GitLabIdentityAgent || out.URL.Path != "/version" {
		t.Fatalf("access_as agent: %q %s", out.Header.Get(tunnel.HeaderGitLabIdentity), out.URL.Path)
	}

	for _, c := range []struct {
		name, target, auth string
		hdr                map[string]string
		code               int
		msg                string
	}{
		{"unknown job", "/k8s-proxy/api", "ci:7:nope", nil, 401, "GitLab refused"},
		{"malformed", "/k8s-proxy/api", "ci:x:y", nil, 401, "malformed"},
		{"agent not allowed", "/k8s-proxy/api", "ci:8:job-other-agent", nil, 403, "may not use this agent"},
		{"GitLab down", "/k8s-proxy/api", "ci:7:gitlab-down", nil, 503, "GitLab is unavailable"},
		{"outside the prefix", "/api", "ci:7:job-ok", nil, 404, "url_path_prefix"},
		{"impersonation", "/k8s-proxy/api", "ci:7:job-ok", map[string]string{"Impersonate-User": "admin"}, 403, "Impersonate-User is not allowed"},
		{"no credential", "/k8s-proxy/api", "", nil, 401, "ci:<agent id>"},
		{"other origin", "/k8s-proxy/api", "ci:7:job-ok", map[string]string{"Origin": "https://evil.example"}, 403, "may not call kas"},
	} {
		h := map[string]string{}
		for k, v := range c.hdr {
			h[k] = v
		}
		if c.auth != "" {
			h["Authorization"] = "Bearer " + c.auth
		}
		w := do("GET", c.target, h)
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.msg) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, w.Code, w.Body, c.code, c.msg)
		}
		if c.code == 401 && w.Header().Get(gitlabaccess.HeaderUnauthorized) != "true" {
			t.Errorf("%s: no %s header", c.name, gitlabaccess.HeaderUnauthorized)
		}
	}

	// The browser's preflight from GitLab's origin.
	w = do("OPTIONS", "/k8s-proxy/api", map[string]string{"Origin": "https://gitlab.example.com", "Access-Control-Request-Method": "GET"})
	if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "https://gitlab.example.com" || w.Header().Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("preflight: %d %v", w.Code, w.Header())
	}

	// Static users keep /agents/<name>/, with no GitLab identity.
	if w := do("GET", "/agents/prod/version", map[string]string{"Authorization": "Bearer static", tunnel.HeaderGitLabIdentity: "agent"}); w.Code != 200 {
		t.Fatalf("static user: %d %s", w.Code, w.Body)
	}
	if agent, out := last(); agent != "prod" || out.Header.Get(tunnel.HeaderGitLabIdentity) != "" || out.Header.Get(tunnel.HeaderProxyUser) != "alice" {
		t.Fatalf("static user: %q %v", agent, out.Header)
	}
}

// peerUsers authenticates as the private API does (a kas peer's token).
type peerUsers struct{ staticUsers }

func (peerUsers) AuthenticateRequest(r *http.Request, token string) (User, error) {
	if token == "peer" {
		return User{Name: "gitlab:ci_job:42", Agents: []string{"7"}}, nil
	}
	return User{}, ErrUnauthenticated
}

// A GitLab caller's request that a kas peer forwards keeps its identity;
// one from anyone else loses what it claims.
func TestPeerKeepsGitLabIdentity(t *testing.T) {
	tun := &recordingTunnels{}
	p := New(Config{Users: peerUsers{}, Tunnels: tun})
	id := (&gitlabaccess.Identity{User: "gitlab:ci_job:42", Groups: []string{"gitlab:ci_job"}}).HeaderValue()
	for _, c := range []struct {
		token, want string
		code        int
	}{{"peer", id, 200}, {"nope", "", 401}} {
		r := httptest.NewRequest("GET", "/agents/7/api", nil)
		r.Header.Set("Authorization", "Bearer "+c.token)
		r.Header.Set(tunnel.HeaderGitLabIdentity, id)
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if w.Code != c.code {
			t.Fatalf("token %q: %d %s", c.token, w.Code, w.Body)
		}
	}
	if got := tun.reqs[0].Header.Get(tunnel.HeaderGitLabIdentity); got != id || len(tun.reqs) != 1 {
		t.Fatalf("forwarded identity %q (%d requests)", got, len(tun.reqs))
	}
}

// Failed GitLab credentials count against the client's address like any
// other: past the burst they get 429, while a valid credential from the
// same address is still served.
func TestGitLabAuthFailuresLimited(t *testing.T) {
	tun := &recordingTunnels{}
	p := New(Config{Users: staticUsers{}, Tunnels: tun, AuthFailures: NewFailureLimiter(5, time.Minute),
		GitLab: &GitLabAccess{Authorizer: fakeAuthorizer{}}})
	codes := map[int]int{}
	for range 50 {
		r := httptest.NewRequest("GET", "/api", nil)
		r.Header.Set("Authorization", "Bearer ci:7:guess")
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		codes[w.Code]++
	}
	if codes[401] != 5 || codes[429] != 45 {
		t.Fatalf("answers to 50 bad job tokens: %v", codes)
	}
	r := httptest.NewRequest("GET", "/api", nil)
	r.Header.Set("Authorization", "Bearer ci:7:job-ok")
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("a valid job token after the flood: %d %s", w.Code, w.Body)
	}
}

// FuzzGitLabAPIPath: a GitLab caller's API path is always absolute, a
// suffix of what was asked, and only under the prefix.
func FuzzGitLabAPIPath(f *testing.F) {
	for _, s := range []string{"/k8s-proxy/api/v1/pods", "/k8s-proxy", "/k8s-proxyx/api", "/api", "//k8s-proxy/"} {
		f.Add(s)
	}
	g := &GitLabAccess{PathPrefix: "/k8s-proxy/"}
	f.Fuzz(func(t *testing.T, p string) {
		rest, err := g.apiPath(p)
		if err != nil {
			return
		}
		if !strings.HasPrefix(rest, "/") || !strings.HasSuffix(p, strings.TrimPrefix(rest, "/")) {
			t.Fatalf("rest %q from %q", rest, p)
		}
		if p != "/k8s-proxy" && !strings.HasPrefix(p, "/k8s-proxy/") {
			t.Fatalf("%q accepted outside the prefix", p)
		}
	})
}
