package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/api/rpc"
	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/kas/identity"
	"kubetunnel/kasproxy"
)

type fakeAgents []identity.Agent

func (f fakeAgents) Agents() []identity.Agent { return f }
func (f fakeAgents) Agent(key string) (identity.Agent, bool) {
	i := slices.IndexFunc(f, func(a identity.Agent) bool { return a.Key == key })
	if i < 0 {
		return identity.Agent{}, false
	}
	return f[i], true
}

type fakeSessions map[string][]Session

func (f fakeSessions) Count(agent string) int          { return len(f[agent]) }
func (f fakeSessions) Snapshot(agent string) []Session { return f[agent] }

// fakeGitLab lets personal access token "pat-of-<user>" reach the agents
// with the ids listed for that user; "down" makes it unavailable.
type fakeGitLab struct {
	down  atomic.Bool
	users map[string][]int64
}

func (f *fakeGitLab) Authorize(_ context.Context, c gitlabaccess.Credential) (*gitlabaccess.Grant, error) {
	if f.down.Load() {
		return nil, gitlabaccess.ErrUnavailable
	}
	user, _ := strings.CutPrefix(c.Token, "pat-of-")
	if c.Kind != gitlabaccess.KindPAT || !slices.Contains(f.users[user], c.AgentID) {
		return nil, fmt.Errorf("%w: no", gitlabaccess.ErrUnauthorized)
	}
	return &gitlabaccess.Grant{Kind: c.Kind, AgentID: c.AgentID, Username: user}, nil
}

func newTestHandler(t *testing.T, gl *fakeGitLab) (*httptest.Server, *Store) {
	t.Helper()
	store := NewStore(prometheus.NewRegistry())
	cfg := Config{
		Store:    store,
		Agents:   fakeAgents{{Key: "1", Name: "prod", ID: 1}, {Key: "2", Name: "stage", ID: 2}},
		Sessions: fakeSessions{"1": {{AgentkVersion: "v9", Remote: "10.0.0.1:5"}}},
		Replica:  func() string { return "kas-0" },
		AuthenticateUser: func(_ context.Context, token string) (kasproxy.User, error) {
			if token == "alice-token" {
				return kasproxy.User{Name: "alice", Agents: []string{"2"}}, nil
			}
			return kasproxy.User{}, errors.New("unknown token")
		},
		Public: func() bool { return false },
	}
	if gl != nil {
		cfg.GitLab = gl
	}
	mux := http.NewServeMux()
	New(cfg).Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, store
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Who sees which agents, against fakes of the registry, the sessions,
// users[] and GitLab: users[] tokens see their agents, a GitLab personal
// access token the agents GitLab allows, others 401, and 503 while
// GitLab cannot answer.
func TestHandlerScopes(t *testing.T) {
	gl := &fakeGitLab{users: map[string][]int64{"carol": {1}, "dave": {}}}
	srv, store := newTestHandler(t, gl)
	store.Sent("1", "group/app", "c1")

	names := func(body string) []string {
		var rep Report
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		var out []string
		for _, a := range rep.Agents {
			out = append(out, a.Name)
		}
		return out
	}
	if code, body := get(t, srv.URL+"/api/v1/status", "alice-token"); code != 200 || !slices.Equal(names(body), []string{"stage"}) {
		t.Errorf("alice: %d %s", code, body)
	}
	code, body := get(t, srv.URL+"/api/v1/status", "pat-of-carol")
	if code != 200 || !slices.Equal(names(body), []string{"prod"}) || !strings.Contains(body, `"gitlab_user": true`) || !strings.Contains(body, `"in_progress": true`) {
		t.Errorf("carol (GitLab): %d %s", code, body)
	}
	if code, body := get(t, srv.URL+"/api/v1/agents/2", "pat-of-carol"); code != http.StatusNotFound {
		t.Errorf("carol asks for an agent GitLab does not give her: %d %s", code, body)
	}
	for _, tok := range []string{"pat-of-dave", "nobody", "pat:"} {
		if code, body := get(t, srv.URL+"/api/v1/status", tok); code != http.StatusUnauthorized {
			t.Errorf("%q: %d %s, want 401", tok, code, body)
		}
	}
	gl.down.Store(true)
	if code, body := get(t, srv.URL+"/api/v1/agents", "pat-of-erin"); code != http.StatusServiceUnavailable {
		t.Errorf("GitLab down: %d %s, want 503", code, body)
	}
	if code, body := get(t, srv.URL+"/api/v1/agents", ""); code != 200 || !strings.Contains(body, `"stage"`) || !strings.Contains(body, `"prod"`) {
		t.Errorf("the agents API without a token: %d %s", code, body)
	}
}

// Without gitlab: a token that is not a users[] token is refused without
// asking anyone, and the page's sign-in says so.
func TestHandlerWithoutGitLab(t *testing.T) {
	srv, store := newTestHandler(t, nil)
	store.Report("1", &rpc.SyncStatus{ProjectId: "group/app", CommitId: "c1", Result: "synced"})
	if code, body := get(t, srv.URL+"/api/v1/status", "pat-of-carol"); code != http.StatusUnauthorized || !strings.Contains(body, "users[].token_sha256") {
		t.Errorf("a PAT without gitlab: %d %s", code, body)
	}
	resp, err := http.PostForm(srv.URL+"/login", url.Values{"token": {"nope"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "personal access token") || !strings.Contains(body, "unknown token") {
		t.Errorf("sign-in with a bad token: %d\n%s", resp.StatusCode, body)
	}
}
