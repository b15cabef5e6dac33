package kasproxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

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
	return serveFrom(p, "192.0.2.1:1234", method, path, token, hdr)
}

func serveFrom(p http.Handler, remote, method, path, token string, hdr http.Header) (int, string) {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = remote
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

// Failed authentications from one address (an ingress, a NAT) never lock
// out the valid users behind it: they are counted, and past the burst a
// bad token gets 429, but a good one is served.
func TestAuthLimiterNeverBlocksValidToken(t *testing.T) {
	p := New(Config{Users: fakeUsers{}, Tunnels: &recordingTunnel{}, AuthFailures: NewFailureLimiter(5, time.Minute)})
	var last int
	for range 20 {
		last, _ = serve(p, "GET", "/agents/prod/api", "guess", nil)
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("bad token after 20 failures: %d, want 429", last)
	}
	for range 5 {
		if code, body := serve(p, "GET", "/agents/prod/api", "alice-token", nil); code != 200 {
			t.Fatalf("valid token from the same address: %d %s", code, body)
		}
	}
}

// Behind a trusted proxy, failures count against the client that
// X-Forwarded-For names; from any other peer the header is ignored.
func TestAuthLimiterTrustedProxy(t *testing.T) {
	p := New(Config{Users: fakeUsers{}, Tunnels: &recordingTunnel{}, AuthFailures: NewFailureLimiter(5, time.Minute),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	var last int
	for range 10 {
		// The attacker forges a left entry; the ingress appends the real one.
		last, _ = serveFrom(p, "10.1.1.1:5555", "GET", "/agents/prod/api", "guess", xff("203.0.113.9, 198.51.100.7"))
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("attacker behind the ingress: %d, want 429", last)
	}
	// Another client behind the same ingress is not limited...
	if code, _ := serveFrom(p, "10.1.1.1:5555", "GET", "/agents/prod/api", "guess", xff("198.51.100.8")); code != http.StatusUnauthorized {
		t.Errorf("another client behind the ingress: %d, want 401", code)
	}
	// ...through a second trusted hop either.
	if code, _ := serveFrom(p, "10.1.1.2:5555", "GET", "/agents/prod/api", "guess", xff("198.51.100.8, 10.9.9.9")); code != http.StatusUnauthorized {
		t.Errorf("another client behind two proxies: %d, want 401", code)
	}
	// An untrusted peer cannot escape its count by varying the header.
	for i := range 10 {
		last, _ = serveFrom(p, "192.0.2.50:1", "GET", "/agents/prod/api", "guess", xff(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 20)}).String()))
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("untrusted peer with varying X-Forwarded-For: %d, want 429", last)
	}
}

// One caller cannot take every slot of an agent: past its own limit it
// gets 429, while another caller is still served.
func TestFairSlotsPerUser(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 100)
	rt := &recordingTunnel{handler: func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/hang") {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}}
	p := New(Config{Users: fakeUsers{}, Tunnels: rt, MaxStreamsPerAgent: 10, MaxStreamsPerUser: 3})
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for range 20 {
		wg.Go(func() {
			code, _ := serve(p, "GET", "/agents/prod/hang", "mallory-token", nil)
			codes <- code
		})
	}
	for range 3 {
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatal("the first requests did not reach the agent")
		}
	}
	// The other 17 are refused at once.
	deadline := time.After(5 * time.Second)
	for range 17 {
		select {
		case c := <-codes:
			if c != http.StatusTooManyRequests {
				t.Errorf("refused request: %d, want 429", c)
			}
		case <-deadline:
			t.Fatal("requests over the per-user limit were not refused")
		}
	}
	code, body := serve(p, "GET", "/agents/prod/api", "alice-token", nil)
	if code != 200 {
		t.Errorf("another user while mallory holds her slots: %d %s", code, body)
	}
	code, body = serve(p, "GET", "/agents/prod/api", "mallory-token", nil)
	if code != http.StatusTooManyRequests || !strings.Contains(body, "the limit per user") {
		t.Errorf("mallory's fourth: %d %s", code, body)
	}
	close(release)
	wg.Wait()
	if code, _ := serve(p, "GET", "/agents/prod/api", "mallory-token", nil); code != 200 {
		t.Errorf("after her requests ended: %d", code)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.perAgent)+len(p.perUser) != 0 {
		t.Errorf("slot maps not emptied: %v %v", p.perAgent, p.perUser)
	}
}

// FuzzClientAddr: whatever X-Forwarded-For a caller sends, the address
// failures are counted against is the TCP peer or an untrusted address
// that the header names, never a trusted proxy's nor one it did not name.
func FuzzClientAddr(f *testing.F) {
	f.Add("198.51.100.7", "10.1.1.1")
	f.Add("203.0.113.9, 198.51.100.7, 10.9.9.9", "10.1.1.1")
	f.Add("::ffff:198.51.100.7", "10.1.1.1")
	f.Add("garbage, 10.0.0.1", "192.0.2.1")
	f.Add("", "10.2.3.4")
	p := New(Config{Users: fakeUsers{}, Tunnels: &recordingTunnel{}, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	f.Fuzz(func(t *testing.T, xff, peer string) {
		if _, err := netip.ParseAddr(peer); err != nil {
			return // the TCP peer is always an address
		}
		r := httptest.NewRequest("GET", "/agents/prod/api", nil)
		r.RemoteAddr = net.JoinHostPort(peer, "1234")
		r.Header.Set("X-Forwarded-For", xff)
		got := p.clientAddr(r)
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if got == host {
			return
		}
		if !p.trusted(peer) {
			t.Fatalf("untrusted peer %q: counted against %q from X-Forwarded-For %q", peer, got, xff)
		}
		if p.trusted(got) {
			t.Fatalf("counted against trusted proxy %q (X-Forwarded-For %q)", got, xff)
		}
		ip, err := netip.ParseAddr(got)
		if err != nil || !strings.Contains(xff, strings.TrimPrefix(ip.String(), "::ffff:")) && !containsAddr(xff, ip) {
			t.Fatalf("counted against %q, not named in X-Forwarded-For %q", got, xff)
		}
	})
}

func containsAddr(xff string, ip netip.Addr) bool {
	for h := range strings.SplitSeq(xff, ",") {
		if a, err := netip.ParseAddr(strings.TrimSpace(h)); err == nil && a.Unmap() == ip {
			return true
		}
	}
	return false
}
