package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"kubetunnel/agentk"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/kas"
)

func TestProxyIdentityAndHeaders(t *testing.T) {
	e, _ := startWithConfig(t, "")
	s := e.callSeen(aliceToken, map[string]string{"Kas-Proxy-User": "root", "Cookie": "a=b"})
	if s.Path != "/api/v1/pods" || s.Query != "limit=1" {
		t.Errorf("path %q query %q", s.Path, s.Query)
	}
	if s.Auth != "Bearer "+saToken {
		t.Errorf("API server saw Authorization %q, want agentk's own token", s.Auth)
	}
	if s.ImpUser != "" || len(s.KasHeaders) != 0 {
		t.Errorf("access_as agent leaked identity headers: %+v", s)
	}

	// access_as user: agentk impersonates the caller with their groups.
	e.repo.Commit("as user", map[string]string{kas.AgentConfigPath(agentName): "user_access:\n  access_as:\n    user: {}\n"})
	tu.Eventually(t, 10*time.Second, "impersonation", func() bool { return e.callSeen(aliceToken, nil).ImpUser == "alice" })
	if s := e.callSeen(aliceToken, nil); len(s.ImpGroups) != 1 || s.ImpGroups[0] != "developers" {
		t.Errorf("impersonated groups %v, want [developers]", s.ImpGroups)
	}

	// user_access.groups that alice is not in: agentk itself refuses.
	e.repo.Commit("groups", map[string]string{kas.AgentConfigPath(agentName): "user_access:\n  access_as:\n    user: {}\n  groups:\n  - id: ops\n"})
	tu.Eventually(t, 10*time.Second, "agentk refusal", func() bool {
		code, body := e.call("GET", "/api/v1/pods", aliceToken, nil, nil)
		return code == 403 && strings.Contains(string(body), "user_access.groups")
	})
}

func TestProxyRefusals(t *testing.T) {
	e, _ := startWithConfig(t, "")
	cases := []struct {
		name, path, token string
		hdr               map[string]string
		code              int
		msg               string
	}{
		{"no token", "/api/v1/pods", "", nil, 401, "Unauthorized"},
		{"bad token", "/api/v1/pods", "nope", nil, 401, "Unauthorized"},
		{"agent token is not a user token", "/api/v1/pods", agentToken, nil, 401, "Unauthorized"},
		{"user without the agent", "/api/v1/pods", bobToken, nil, 403, `user "bob" may not use agent "prod"`},
		{"impersonation", "/api/v1/pods", aliceToken, map[string]string{"Impersonate-User": "admin"}, 403, "Impersonate-User is not allowed"},
		{"impersonated group", "/api/v1/pods", aliceToken, map[string]string{"Impersonate-Group": "system:masters"}, 403, "Impersonate-Group is not allowed"},
		{"discovery gets plain text", "/api", bobToken, nil, 403, `user "bob" may not use agent "prod"`},
	}
	for _, c := range cases {
		code, body := e.call("GET", c.path, c.token, nil, c.hdr)
		if code != c.code || !strings.Contains(string(body), c.msg) {
			t.Errorf("%s: %d %s, want %d containing %q", c.name, code, body, c.code, c.msg)
		}
		if c.path != "/api" && !strings.Contains(string(body), `"kind":"Status"`) {
			t.Errorf("%s: not a Kubernetes Status body: %s", c.name, body)
		}
	}
	// An agent that does not exist gets the same answer as one that does
	// but is not allowed: nothing tells them apart.
	req, _ := http.NewRequest("GET", strings.Replace(e.proxyURL(), "/agents/prod", "/agents/nosuch", 1)+"/api", nil)
	req.Header.Set("Authorization", "Bearer "+bobToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	b = unquote(b)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "may not use agent") {
		t.Errorf("unknown agent: %d %s", resp.StatusCode, b)
	}
	// No path prefix: a clear pointer to the URL scheme.
	resp, err = http.Get("http://" + e.cfg.Agent.KubernetesAPI.Listen.Address + "/api/v1/pods")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	b = unquote(b)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(b), "/agents/<agent-name>") {
		t.Errorf("no agent in path: %d %s", resp.StatusCode, b)
	}
	if e.kasLog.Contains(aliceToken) || e.kasLog.Contains(bobToken) {
		t.Error("a caller token is in the kas log")
	}
	if !e.kasLog.Contains(`msg="Proxied request" user=bob agent=prod verb=get path=/api/v1/pods status=403`) {
		t.Errorf("no audit line for bob's refused request:\n%s", e.kasLog)
	}
}

func TestProxyAuthFailuresAreRateLimited(t *testing.T) {
	e, _ := startWithConfig(t, "")
	var last int
	for range 25 {
		last, _ = e.call("GET", "/api", "guess", nil, nil)
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("after 25 failures: %d, want 429", last)
	}
	// A valid token is never refused: many users may share the address
	// (an ingress, a NAT).
	if code, _ := e.call("GET", "/api", aliceToken, nil, nil); code != http.StatusOK {
		t.Errorf("good token from a limited address: %d, want 200", code)
	}
}

func TestProxyAgentNotConnected(t *testing.T) {
	e, a := startWithConfig(t, "")
	a.stop()
	e.waitConnected(0)
	start := time.Now()
	code, body := e.call("GET", "/api", aliceToken, nil, nil)
	if code != 503 || !strings.Contains(string(body), `agent "prod" is not connected to kas`) {
		t.Fatalf("%d %s", code, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("503 took %v, want fast", d)
	}
	e.startAgent(nil)
	tu.Eventually(t, 10*time.Second, "requests to work again", func() bool {
		code, _ := e.call("GET", "/api", aliceToken, nil, nil)
		return code == 200
	})
}

func TestProxyLargeBodiesAndWatch(t *testing.T) {
	e, _ := startWithConfig(t, "")
	// A 20 MB request body arrives whole.
	code, body := e.call("POST", "/api/v1/namespaces/default/configmaps", aliceToken, bytes.NewReader(make([]byte, 20<<20)), nil)
	var s seen
	json.Unmarshal(body, &s)
	if code != 200 || s.BodyLen != 20<<20 {
		t.Fatalf("%d, body of %d bytes arrived", code, s.BodyLen)
	}

	// A watch streams events as they come, and ends cleanly (no error,
	// just EOF) when kas shuts down.
	req, _ := http.NewRequest("GET", e.proxyURL()+"/watch/pods?watch=true", nil)
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for i := range 3 {
		if !sc.Scan() {
			t.Fatalf("watch ended early: %v", sc.Err())
		}
		if i == 0 && time.Since(start) > time.Second {
			t.Errorf("first event after %v", time.Since(start))
		}
	}
	if v := metrics.Gather(t, e.kas.Metrics()).Sum("kas_proxy_inflight"); v != 1 {
		t.Errorf("kas_proxy_inflight = %v during a watch, want 1", v)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.stop()
	}()
	for sc.Scan() {
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Errorf("watch ended with %v, want a clean end", err)
	}
	wg.Wait()
}

func TestProxyStreamLimit(t *testing.T) {
	e := newEnv(t, "ws")
	e.cfg.Agent.KubernetesAPI.MaxStreamsPerAgent = 2
	e.start()
	a := e.startAgent(nil)
	tu.Eventually(t, 10*time.Second, "agent config", func() bool { _, c := a.Config(); return c != nil })
	var bodies []io.Closer
	defer func() {
		for _, b := range bodies {
			b.Close()
		}
	}()
	for range 2 {
		req, _ := http.NewRequest("GET", e.proxyURL()+"/watch/pods?watch=true", nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("watch: %v %v", err, resp)
		}
		bodies = append(bodies, resp.Body)
	}
	code, body := e.call("GET", "/api", aliceToken, nil, nil)
	if code != http.StatusTooManyRequests || !strings.Contains(string(body), "2 requests in flight") {
		t.Fatalf("third request: %d %s, want 429", code, body)
	}
	// A caller that goes away cancels its request in the cluster, and
	// frees its slot.
	if n := e.api.watches.Load(); n != 2 {
		t.Fatalf("API server serves %d watches, want 2", n)
	}
	for _, b := range bodies {
		b.Close()
	}
	bodies = nil
	tu.Eventually(t, 5*time.Second, "watches to end in the cluster", func() bool { return e.api.watches.Load() == 0 })
	tu.Eventually(t, 5*time.Second, "a free slot", func() bool { code, _ := e.call("GET", "/api", aliceToken, nil, nil); return code == 200 })
}

// A caller that leaves a quiet watch (no event to write that would fail)
// ends it in the cluster: kas notices the connection closing, on its
// plain HTTP listener too, where httpserve.ServeFast answers a GET
// without net/http's watch of the caller.
func TestProxyCallerLeavingAQuietWatchEndsIt(t *testing.T) {
	e, _ := startWithConfig(t, "")
	for range 3 {
		req, _ := http.NewRequest("GET", e.proxyURL()+"/watch/pods?watch=true&silent=1", nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("watch: %v %v", err, resp)
		}
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			t.Fatalf("first event: %v", err)
		}
		tu.Eventually(t, 5*time.Second, "the watch in the cluster", func() bool { return e.api.watches.Load() == 1 })
		resp.Body.Close() // closes the connection: the body was not read to its end
		tu.Eventually(t, 5*time.Second, "the watch to end in the cluster", func() bool { return e.api.watches.Load() == 0 })
		tu.Eventually(t, 5*time.Second, "kas_proxy_inflight back at 0", func() bool {
			return metrics.Gather(t, e.kas.Metrics()).Sum("kas_proxy_inflight") == 0
		})
	}
}

// Several agentk replicas of one agent: requests spread over them, and
// when one goes the others carry on.
func TestProxySpreadsOverReplicas(t *testing.T) {
	e, a1 := startWithConfig(t, "")
	a2 := e.startAgent(func(o *agentk.Options) { o.REST.BearerToken = saToken + "-replica-2" })
	e.waitConnected(2)
	tu.Eventually(t, 10*time.Second, "second replica's config", func() bool { _, c := a2.Config(); return c != nil })
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 20 {
		req, _ := http.NewRequest("GET", e.proxyURL()+"/api/v1/pods", nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", err, resp)
		}
		resp.Body.Close()
	}
	if n := e.api.clientCount(); n != 2 {
		t.Errorf("the API server saw requests from %d agentk replicas, want 2", n)
	}
	a1.stop()
	e.waitConnected(1)
	for range 5 {
		if code, body := e.call("GET", "/api/v1/pods", aliceToken, nil, nil); code != 200 {
			t.Fatalf("after one replica left: %d %s", code, body)
		}
	}
}

// Oversized request headers are refused with 431, not buffered.
func TestProxyHeaderLimit(t *testing.T) {
	e, _ := startWithConfig(t, "")
	code, _ := e.call("GET", "/api/v1/pods", aliceToken, nil, map[string]string{"X-Big": strings.Repeat("a", 2<<20)})
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 MiB header: %d, want 431", code)
	}
}

// A proxy user cannot make agentk drop its connection through agentk's
// GoAway endpoint: kas refuses the path, so the agent's one session
// stays and it never hears a GoAway.
func TestProxyUserCannotReachGoAway(t *testing.T) {
	e, a := startWithConfig(t, "")
	for range 30 {
		for _, p := range []string{"/-/tunnel/goaway", "//-/tunnel/goaway", "/%2D/tunnel/goaway"} {
			if code, body := e.call("POST", p, aliceToken, nil, nil); code != http.StatusNotFound {
				t.Fatalf("POST %s: %d %s, want 404", p, code, body)
			}
		}
	}
	// The agent still serves the caller, through the session that
	// carried the calls (a GoAway would have it dial a second one).
	if code, body := e.call("GET", "/api/v1/pods", aliceToken, nil, nil); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if n := e.kas.ConnectedSessions(agentName); n != 1 {
		t.Errorf("%d sessions after the calls, want 1", n)
	}
	if a.log.Contains("GoAway") {
		t.Errorf("agentk heard a GoAway:\n%s", a.log)
	}
}
