package kasproxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"kubetunnel/internal/kubehttp"
)

// fakeUsers authenticates token "<name>-token" as user <name>, who may
// use agent "prod".
type fakeUsers struct{}

func (fakeUsers) AuthenticateUser(_ context.Context, token string) (User, error) {
	name, ok := strings.CutSuffix(token, "-token")
	if !ok || name == "" {
		return User{}, ErrUnauthenticated
	}
	return User{Name: name, Groups: []string{"dev"}, Agents: []string{"prod"}}, nil
}

// recordingTunnel stands in for an agent: it records the requests that
// reach it and answers each with handler (200 "ok" when nil).
type recordingTunnel struct {
	mu      sync.Mutex
	seen    []*http.Request
	handler http.HandlerFunc
}

func (rt *recordingTunnel) RoundTripper(string) (http.RoundTripper, error) {
	return RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
		rt.mu.Lock()
		rt.seen = append(rt.seen, r)
		rt.mu.Unlock()
		h := rt.handler
		if h == nil {
			h = func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }
		}
		rec := httptest.NewRecorder()
		h(rec, r)
		resp := rec.Result()
		resp.Request = r
		return resp, nil
	}), nil
}

func (rt *recordingTunnel) requests() []*http.Request {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]*http.Request(nil), rt.seen...)
}

// serve sends one request to p and returns the status and body.
func serve(p http.Handler, method, path, token string, hdr http.Header) (int, string) {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = "192.0.2.1:1234"
	for k, v := range hdr {
		r.Header[k] = v
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// A proxy user must not reach agentk's own endpoints (GoAway), however
// the path is spelled; Kubernetes API paths still pass.
func TestInternalPathsRefused(t *testing.T) {
	rt := &recordingTunnel{}
	p := New(Config{Users: fakeUsers{}, Tunnels: rt})
	for _, path := range []string{
		"/agents/prod/-/tunnel/goaway",
		"/agents/prod//-/tunnel/goaway",
		"/agents/prod/./-/tunnel/goaway",
		"/agents/prod/api/../-/tunnel/goaway",
		"/agents/prod/%2D/tunnel/goaway",
		"/agents/prod/-",
	} {
		code, body := serve(p, "POST", path, "alice-token", nil)
		if code != http.StatusNotFound || !strings.Contains(body, "for kas alone") {
			t.Errorf("%s: %d %s, want 404", path, code, body)
		}
	}
	if n := len(rt.requests()); n != 0 {
		t.Fatalf("%d internal requests reached the agent", n)
	}
	for _, path := range []string{"/agents/prod/api/v1/namespaces/-/pods", "/agents/prod/apis/x/v1/-/y"} {
		if code, body := serve(p, "GET", path, "alice-token", nil); code != 200 {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
}

// Front-proxy identity headers and impersonation spelled with underscores
// never reach the agent; a spelled-out impersonation header is refused.
func TestCallerIdentityHeadersStripped(t *testing.T) {
	rt := &recordingTunnel{}
	p := New(Config{Users: fakeUsers{}, Tunnels: rt})
	hdr := http.Header{
		"X-Remote-User":         {"admin"},
		"X-Remote-Group":        {"system:masters"},
		"X-Remote-Extra-Scopes": {"all"},
		"x_remote_user":         {"admin"},
		"Kas-Internal":          {"goaway"},
		"Kas_proxy_user":        {"root"},
		"Accept":                {"application/json"},
	}
	if code, body := serve(p, "GET", "/agents/prod/api/v1/pods", "alice-token", hdr); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	got := rt.requests()[0].Header
	for k := range got {
		if kubehttp.IsCallerHeader(k) && k != "Kas-Proxy-User" && k != "Kas-Proxy-Group" {
			t.Errorf("%s reached the agent", k)
		}
	}
	if got.Get("Kas-Proxy-User") != "alice" || got.Get("Accept") != "application/json" {
		t.Errorf("agent got %v", got)
	}
	code, body := serve(p, "GET", "/agents/prod/api/v1/pods", "alice-token", http.Header{"Impersonate_User": {"admin"}})
	if code != http.StatusForbidden || !strings.Contains(body, "is not allowed through kas") {
		t.Errorf("Impersonate_User: %d %s, want 403", code, body)
	}
}
