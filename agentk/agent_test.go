package agentk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/agentcfg"
	"kubetunnel/agentk/agentktest"
	"kubetunnel/api/rpc"
	"kubetunnel/internal/testutil"
	"kubetunnel/tunnel"
	"kubetunnel/version"
)

const (
	agentToken = "agent-token-0123456789"
	saToken    = "agentk-service-account-token"
)

// fakeAPI stands in for the cluster's API server: /version, and an echo of
// every other request (path and identity) as JSON.
type fakeAPI struct {
	*httptest.Server
	mu   sync.Mutex // guards seen
	seen []apiRequest
}

type apiRequest struct {
	Method  string `json:"method"`
	Path    string `json:"path"`
	ImpUser string `json:"impersonate_user"`
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+saToken {
			http.Error(w, "not agentk", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/version" {
			fmt.Fprint(w, `{"major":"1","minor":"37","gitVersion":"v1.37.0-fake"}`)
			return
		}
		req := apiRequest{Method: r.Method, Path: r.URL.Path, ImpUser: r.Header.Get("Impersonate-User")}
		f.mu.Lock()
		f.seen = append(f.seen, req)
		f.mu.Unlock()
		json.NewEncoder(w).Encode(req)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []apiRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]apiRequest(nil), f.seen...)
}

type testAgent struct {
	*Agent
	log *testutil.LogSink
	obs string // http://host:port of the observability listener
}

// startAgent runs an agentk against kas and api until the test ends.
func startAgent(t *testing.T, kas *agentktest.Kas, api *fakeAPI, mutate func(*Options)) *testAgent {
	t.Helper()
	opts := &Options{
		KasAddress:          kas.Address,
		Token:               agentToken,
		ObservabilityListen: "127.0.0.1:0",
		REST:                &rest.Config{Host: api.URL, BearerToken: saToken},
		ReconnectInitial:    10 * time.Millisecond,
		ReconnectMax:        100 * time.Millisecond,
		DrainTimeout:        time.Second,
	}
	if mutate != nil {
		mutate(opts)
	}
	logger, sink := testutil.NewLogger(t)
	a, err := New(opts, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agentk Run: %v", err)
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agentk stopped: %v", err)
	}
	return &testAgent{Agent: a, log: sink, obs: "http://" + a.ObservabilityAddr().String()}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func configJSON(t *testing.T, yaml string) []byte {
	t.Helper()
	cfg, err := agentcfg.Parse([]byte(yaml), "group/agents")
	if err != nil {
		t.Fatal(err)
	}
	b, err := cfg.ToJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A fresh agentk whose first config.yaml is invalid serves the proxy with
// the default config and says why in /readyz; a later good commit applies;
// a bad one after it keeps the good one, and /readyz names both.
func TestInvalidConfigServesDefaultsThenKeepsLastGood(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	api := newFakeAPI(t)
	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c1", AgentName: agentktest.AgentName,
		Error: `.gitlab/agents/a/config.yaml: line 2: unknown key "manifest_projectz" in gitops`})
	a := startAgent(t, kas, api, nil)
	sess := kas.Session(10 * time.Second)

	testutil.Eventually(t, 10*time.Second, "readyz to explain the config", func() bool {
		_, body := get(t, a.obs+"/readyz")
		return strings.Contains(body, "config: commit c1: invalid config.yaml, running the default config") && strings.Contains(body, "manifest_projectz")
	})
	code, body := get(t, a.obs+"/readyz")
	if code != http.StatusOK || !strings.HasPrefix(body, "ok\n") {
		t.Errorf("/readyz = %d %q, want 200: agentk serves", code, body)
	}
	if !a.log.Contains("Config: invalid config.yaml, serving with the default config until a good commit arrives") {
		t.Errorf("log does not say the defaults run:\n%s", a.log)
	}
	resp, body := kas.Do(sess, agentktest.ProxyRequest(http.MethodGet, "/api/v1/namespaces", "alice", "developers"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"path":"/api/v1/namespaces"`) || !strings.Contains(body, `"impersonate_user":""`) {
		t.Fatalf("proxied request with the default config: %d %s", resp.StatusCode, body)
	}

	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c2", AgentName: agentktest.AgentName, ConfigJson: configJSON(t, "user_access:\n  access_as: {user: {}}\n")})
	testutil.Eventually(t, 10*time.Second, "commit c2", func() bool { c, _ := a.Config(); return c == "c2" })
	if _, body := get(t, a.obs+"/readyz"); body != "ok\n" {
		t.Errorf("/readyz after a good commit = %q", body)
	}
	if _, body := kas.Do(sess, agentktest.ProxyRequest(http.MethodGet, "/api/v1/pods", "alice")); !strings.Contains(body, `"impersonate_user":"alice"`) {
		t.Errorf("c2 (access as user) not applied: %s", body)
	}

	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c3", AgentName: agentktest.AgentName, Error: "line 1: broken"})
	testutil.Eventually(t, 10*time.Second, "readyz to name c3 and c2", func() bool {
		_, body := get(t, a.obs+"/readyz")
		return strings.Contains(body, "config: commit c3: invalid config.yaml, running the last good commit c2: line 1: broken")
	})
	if c, _ := a.Config(); c != "c2" {
		t.Errorf("running %s after a broken commit, want c2", c)
	}
	if _, body := kas.Do(sess, agentktest.ProxyRequest(http.MethodGet, "/api/v1/pods", "alice")); !strings.Contains(body, `"impersonate_user":"alice"`) {
		t.Errorf("the last good config is not in force: %s", body)
	}
}

// Keys of GitLab's schema that are not implemented are named in one
// warning per commit; ci_access (GitLab applies it) is not among them.
func TestIgnoredKeysWarnedOnce(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c1", AgentName: agentktest.AgentName,
		ConfigJson: configJSON(t, "ci_access:\n  groups: [{id: g}]\nflux: {webhook_receiver_url: http://x}\n")})
	a := startAgent(t, kas, newFakeAPI(t), nil)
	testutil.Eventually(t, 10*time.Second, "commit c1", func() bool { c, _ := a.Config(); return c == "c1" })
	log := a.log.String()
	if n := strings.Count(log, "does not implement"); n != 1 || !strings.Contains(log, "they have no effect: flux (") {
		t.Errorf("want one warning naming flux alone, got %d:\n%s", n, log)
	}
}

// agentk tells kas where it runs, its build and its cluster's version.
func TestHelloCarriesMetadata(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	startAgent(t, kas, newFakeAPI(t), func(o *Options) { o.PodNamespace, o.PodName = "gitlab-agent", "agentk-5f7d-x2x9q" })
	kas.Session(10 * time.Second)
	h := kas.Hellos()[0]
	want := tunnel.Hello{Token: agentToken, AgentVersion: h.AgentVersion, Protocol: 1, Protocols: []int{1, 2},
		PodNamespace: "gitlab-agent", PodName: "agentk-5f7d-x2x9q", KubernetesVersion: "v1.37.0-fake", GitCommit: version.BuildCommit()}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("hello %+v, want %+v", h, want)
	}
}

// /-/tunnel/goaway is kas's own signal: a caller's request to that path
// (which kas marks with Kas-Proxy-User) goes to the API server like any
// other and does not make agentk reconnect; kas's own does.
func TestGoAwayOnlyFromKas(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	api := newFakeAPI(t)
	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c1", AgentName: agentktest.AgentName, ConfigJson: configJSON(t, "")})
	a := startAgent(t, kas, api, nil)
	sess := kas.Session(10 * time.Second)
	testutil.Eventually(t, 10*time.Second, "config", func() bool { c, _ := a.Config(); return c == "c1" })

	for range 20 {
		resp, body := kas.Do(sess, agentktest.ProxyRequest(http.MethodPost, tunnel.GoAwayPath, "mallory"))
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"path":"/-/tunnel/goaway"`) {
			t.Fatalf("a caller's goaway: %d %q, want it proxied to the API server", resp.StatusCode, body)
		}
	}
	if n := len(api.requests()); n != 20 {
		t.Errorf("the API server saw %d requests, want 20", n)
	}
	// Requests were answered in order on one connection: had any been
	// taken as kas's signal, agentk would have dialled again.
	if n := len(kas.Hellos()); n != 1 {
		t.Errorf("agentk dialled %d times after callers' goaway requests, want 1", n)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://agentk"+tunnel.GoAwayPath, nil)
	resp, _ := kas.Do(sess, req)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("kas's goaway: %d, want 204", resp.StatusCode)
	}
	testutil.Eventually(t, 10*time.Second, "agentk to dial again", func() bool { return len(kas.Hellos()) == 2 })
}

// The probe paths of GitLab's chart are served besides ours.
func TestObservabilityPaths(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	a := startAgent(t, kas, newFakeAPI(t), func(o *Options) { o.Token = "wrong-token" })
	for _, p := range []string{"/healthz", "/liveness"} {
		if code, _ := get(t, a.obs+p); code != http.StatusOK {
			t.Errorf("%s = %d", p, code)
		}
	}
	testutil.Eventually(t, 10*time.Second, "a refused dial", func() bool {
		_, body := get(t, a.obs+"/readyz")
		return strings.Contains(body, "unknown agent token")
	})
	for _, p := range []string{"/readyz", "/readiness"} {
		code, body := get(t, a.obs+p)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "unknown agent token") {
			t.Errorf("%s while refused = %d %q", p, code, body)
		}
	}
}

func TestSendsTokenInClear(t *testing.T) {
	for addr, want := range map[string]bool{
		"ws://kas.example.com/":  true,
		"grpc://10.0.0.7:8150":   true,
		"ws://[::1]:8150/":       false,
		"ws://127.0.0.1:8150/":   false,
		"grpc://localhost:8150":  false,
		"wss://kas.example.com/": false,
		"grpcs://10.0.0.7:8150":  false,
	} {
		if got := sendsTokenInClear(addr); got != want {
			t.Errorf("sendsTokenInClear(%q) = %v, want %v", addr, got, want)
		}
	}
}

// agentk says once, at start, that a ws:// address off this machine
// carries its token in clear.
func TestWarnsTokenInClear(t *testing.T) {
	for addr, want := range map[string]bool{"ws://kas.example.com/": true, "ws://127.0.0.1:1/": false} {
		logger, sink := testutil.NewLogger(t)
		_, err := New(&Options{KasAddress: addr, Token: "t", REST: &rest.Config{Host: "https://127.0.0.1:1"}}, logger, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(sink.String(), "The agent token goes to kas unencrypted"); got != map[bool]int{true: 1, false: 0}[want] {
			t.Errorf("%s: %d warnings:\n%s", addr, got, sink)
		}
	}
}
