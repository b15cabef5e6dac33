package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"k8s.io/client-go/rest"

	"kubetunnel/agentk"
	"kubetunnel/gitops/gitrepo"
	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/kascluster"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/kas"
	"kubetunnel/tunnel"
)

// Several kas replicas sharing Redis, in one process, with real agentk
// code and a stand-in API server behind it.

const (
	haAgent      = "prod"
	haAgentToken = "ha-agent-token-0123456789"
	haAlice      = "ha-alice-token-0123456789"
	haBob        = "ha-bob-token-0123456789"
)

// haSession keeps keepalives short but tolerant of a busy machine (-race):
// these tests are about replicas, not dead links.
var haSession = tunnel.SessionConfig{KeepAliveInterval: time.Second, KeepAliveTimeout: 5 * time.Second}

type haEnv struct {
	t      *testing.T
	c      *kascluster.Cluster
	api    *fakeAPI
	agents []func() // stop the agents
}

func newHA(t *testing.T, replicas int) *haEnv { return newHAWith(t, replicas, nil) }

func newHAWith(t *testing.T, replicas int, mutate func(int, *kas.Config)) *haEnv {
	t.Helper()
	repo := testutil.NewGitRepo(t)
	repo.Commit("config", map[string]string{kas.AgentConfigPath(haAgent): "user_access:\n  access_as:\n    user: {}\n"})
	ws := true
	base := &kas.Config{
		Agent: kas.AgentSection{
			Listen:        kas.AgentListen{Websocket: &ws, DrainTimeout: 5 * time.Second},
			Configuration: kas.PollSection{PollPeriod: 100 * time.Millisecond},
		},
		Repositories: []gitrepo.Repository{{ID: "group/config", URL: repo.URL()}},
		Agents:       []kas.AgentEntry{{Name: haAgent, ConfigProject: "group/config", TokenSHA256: []string{kas.HashToken(haAgentToken)}}},
		Users: []kas.UserEntry{
			{Name: "alice", TokenSHA256: []string{kas.HashToken(haAlice)}, Groups: []string{"developers", "ops"}, Agents: []string{haAgent}},
			{Name: "bob", TokenSHA256: []string{kas.HashToken(haBob)}},
		},
	}
	return &haEnv{t: t, api: newFakeAPI(t), c: kascluster.Start(t, base, kascluster.Options{Replicas: replicas, Session: haSession, Mutate: mutate})}
}

// startAgent runs agentk against address and waits for its config.
func (h *haEnv) startAgent(address string) *agentk.Agent {
	h.t.Helper()
	logger, sink := testutil.NewLogger(h.t)
	a := runAgent(h.t, &agentk.Options{
		KasAddress:          address,
		Token:               haAgentToken,
		ObservabilityListen: "127.0.0.1:0",
		REST:                &rest.Config{Host: h.api.URL, BearerToken: saToken},
		ReconnectInitial:    20 * time.Millisecond,
		ReconnectMax:        300 * time.Millisecond,
		Session:             haSession,
	}, logger.With("agentk", address), sink)
	h.agents = append(h.agents, a.stop)
	testutil.Eventually(h.t, 10*time.Second, "agent config", func() bool { _, c := a.Config(); return c != nil })
	return a.Agent
}

func do(method, url, token string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// getAsKubectl is a GET the way client-go sends one: a connection that
// ends before any answer (a replica that closed its listener with the
// balancer's connection still in its accept queue) is retried.
func getAsKubectl(url, token string) (int, []byte, error) {
	var err error
	for range 3 {
		var code int
		var b []byte
		code, b, err = do("GET", url, token, nil)
		if err == nil {
			return code, b, nil
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
			break
		}
	}
	return 0, nil, err
}

func (h *haEnv) get(url, token string) (int, seen, string) {
	h.t.Helper()
	code, b, err := do("GET", url+"/api/v1/pods", token, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	var s seen
	_ = json.Unmarshal(b, &s)
	return code, s, string(b)
}

// streamsClosed checks that no request is left in flight on any replica,
// then stops the agents and waits for every stream to be closed (idle
// pooled streams live as long as their session).
func (h *haEnv) streamsClosed() {
	h.t.Helper()
	for _, r := range h.c.Replicas {
		if s := r.Server(); s != nil {
			testutil.Eventually(h.t, 10*time.Second, fmt.Sprintf("replica %d requests in flight to end", r.Index), func() bool {
				return metrics.Gather(h.t, s.Metrics()).Get("kas_proxy_inflight") == 0
			})
		}
	}
	for _, stop := range h.agents {
		stop()
	}
	for _, r := range h.c.Replicas {
		if s := r.Server(); s != nil {
			testutil.Eventually(h.t, 10*time.Second, fmt.Sprintf("replica %d streams to close", r.Index), func() bool {
				return s.ConnectedSessions(haAgent) == 0 &&
					metrics.Gather(h.t, s.Metrics()).Get("kas_tunnel_streams_open", "direction", "to_agent") == 0 &&
					metrics.Gather(h.t, s.Metrics()).Get("kas_tunnel_streams_open", "direction", "from_agent") == 0
			})
		}
	}
}

// A request reaches the agent whichever replica receives it: the caller's
// identity is carried to the agent's replica (never the caller's token),
// bodies, watches and upgrades pass through, and the private API serves
// only its own agents to callers with a valid peer token.
func TestReplicasForwardToTheAgentsReplica(t *testing.T) {
	h := newHA(t, 3)
	r0, r1, r2 := h.c.Replicas[0], h.c.Replicas[1], h.c.Replicas[2]

	// Not connected anywhere: the usual 503.
	code, _, body := h.get(r1.ProxyURL(haAgent), haAlice)
	if code != 503 || !strings.Contains(body, "is not connected to kas") {
		t.Fatalf("no agent: %d %s", code, body)
	}

	h.startAgent(r0.AgentAddress())
	for _, r := range []*kascluster.Replica{r0, r1, r2} {
		var s seen
		testutil.Eventually(t, 10*time.Second, "request via replica", func() bool {
			code, s, body = h.get(r.ProxyURL(haAgent), haAlice)
			return code == 200
		})
		if s.ImpUser != "alice" || strings.Join(s.ImpGroups, ",") != "developers,ops" {
			t.Errorf("via replica %d: API server saw %s as %v, want alice in developers,ops", r.Index, s.ImpUser, s.ImpGroups)
		}
		if len(s.Secrets) != 0 || len(s.KasHeaders) != 0 {
			t.Errorf("via replica %d: credentials or kas headers reached the API server: %v %v", r.Index, s.Secrets, s.KasHeaders)
		}
	}
	// The receiving replica decides who may reach the agent.
	if code, _, body := h.get(r1.ProxyURL(haAgent), haBob); code != 403 || !strings.Contains(body, "may not use agent") {
		t.Errorf("bob via replica 1: %d %s", code, body)
	}

	// A large body through a peer.
	big := bytes.Repeat([]byte("x"), 3<<20)
	code, b, err := do("POST", r1.ProxyURL(haAgent)+"/api/v1/namespaces/default/configmaps", haAlice, bytes.NewReader(big))
	var s seen
	_ = json.Unmarshal(b, &s)
	if err != nil || code != 200 || s.BodyLen != len(big) {
		t.Errorf("3 MiB POST via replica 1: %d %v, the API server got %d bytes", code, err, s.BodyLen)
	}

	// A watch streams event by event through the peer.
	startWatch(t, r2.ProxyURL(haAgent)+"/watch/pods", haAlice, 3).Close()

	// An upgrade (exec, port-forward) is spliced through the peer.
	conn, err := net.Dial("tcp", r2.Config.Agent.KubernetesAPI.Listen.Address)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /agents/%s/api/v1/namespaces/default/pods/p/exec HTTP/1.1\r\nHost: kas\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n", haAgent, haAlice)
	br := bufio.NewReader(conn)
	uresp, err := http.ReadResponse(br, nil)
	if err != nil || uresp.StatusCode != 101 {
		t.Fatalf("upgrade via replica 2: %v %v", uresp, err)
	}
	fmt.Fprint(conn, "ping through two replicas\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping through two replicas\n" {
		t.Errorf("upgraded stream echoed %q %v", line, err)
	}
	conn.Close()

	if v := metrics.Gather(t, r1.Server().Metrics()).Get("kas_peer_forwards_total", "result", "ok"); v < 2 {
		t.Errorf("replica 1 kas_peer_forwards_total{result=ok} = %v, want at least 2", v)
	}
	if v := metrics.Gather(t, r0.Server().Metrics()).Get("kas_peer_forwards_total", "result", "ok"); v != 0 {
		t.Errorf("replica 0 holds the agent but forwarded %v requests", v)
	}

	// The private API: no caller token, no missing token, and a replica
	// answers only for agents it holds (with the header peers look for).
	priv := "http://" + r0.Config.PrivateAPI.Listen.Address + "/agents/" + haAgent
	for name, tok := range map[string]string{"user token": haAlice, "no token": "", "forged": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.AAAA"} {
		if code, b, _ := do("GET", priv+"/api/v1/pods", tok, nil); code != 401 {
			t.Errorf("private API with %s: %d %s", name, code, b)
		}
	}
	h.streamsClosed()
}

// Stale registry entries (a replica that died, one that no longer holds
// the agent) cost a retry, never a failed request, bodies included.
func TestReplicasSkipStaleEntries(t *testing.T) {
	h := newHA(t, 3)
	r0, r1, r2 := h.c.Replicas[0], h.c.Replicas[1], h.c.Replicas[2]
	h.startAgent(r0.AgentAddress())
	testutil.Eventually(t, 10*time.Second, "request via replica 1", func() bool { c, _, _ := h.get(r1.ProxyURL(haAgent), haAlice); return c == 200 })

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	rc := redis.NewClient(&redis.Options{Addr: h.c.Redis.Addr})
	defer rc.Close()
	key := r0.Config.Redis.KeyPrefix + ":agent:" + haAgent
	for _, stale := range []string{dead, r2.Server().PrivateAPIURL()} {
		if err := rc.ZAdd(context.Background(), key, redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: stale}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	body := strings.Repeat("y", 100<<10)
	for i := range 30 {
		code, b, err := do("POST", r1.ProxyURL(haAgent)+"/api/v1/namespaces", haAlice, strings.NewReader(body))
		var s seen
		_ = json.Unmarshal(b, &s)
		if err != nil || code != 200 || s.BodyLen != len(body) {
			t.Fatalf("POST %d via replica 1 with stale entries: %d %v %s", i, code, err, b)
		}
	}
	m := r1.Server().Metrics()
	if v := metrics.Gather(t, m).Get("kas_peer_forwards_total", "result", "unreachable"); v == 0 {
		t.Error("the dead peer was never tried")
	}
	if v := metrics.Gather(t, m).Get("kas_peer_forwards_total", "result", "not_connected"); v == 0 {
		t.Error("the peer without the agent was never tried")
	}
	h.streamsClosed()
}

// Redis down: each replica still serves its own agents; the others answer
// a 503 that names the cause; all recovers without a kas restart.
func TestReplicasRedisDown(t *testing.T) {
	h := newHA(t, 2)
	r0, r1 := h.c.Replicas[0], h.c.Replicas[1]
	h.startAgent(r0.AgentAddress())
	testutil.Eventually(t, 10*time.Second, "request via replica 1", func() bool { c, _, _ := h.get(r1.ProxyURL(haAgent), haAlice); return c == 200 })

	h.c.Redis.Kill()
	if code, _, body := h.get(r0.ProxyURL(haAgent), haAlice); code != 200 {
		t.Errorf("local agent with Redis down: %d %s", code, body)
	}
	code, _, body := h.get(r1.ProxyURL(haAgent), haAlice)
	want := `agent \"prod\" is not connected to this kas replica and the agent registry is unreachable: `
	if code != 503 || !strings.Contains(body, want) {
		t.Errorf("cross-replica with Redis down: %d %s, want 503 with %s", code, body, want)
	}
	if v := metrics.Gather(t, r1.Server().Metrics()).Get("kas_agent_registry_up"); v != 0 {
		t.Errorf("kas_agent_registry_up = %v with Redis down", v)
	}
	if !r1.Log.Contains("Agent registry (Redis) unreachable") {
		t.Errorf("replica 1 did not log the outage")
	}

	h.c.Redis.Restart() // empty
	start := time.Now()
	testutil.Eventually(t, 10*time.Second, "cross-replica service after Redis is back", func() bool {
		c, _, _ := h.get(r1.ProxyURL(haAgent), haAlice)
		return c == 200
	})
	t.Logf("cross-replica requests back %v after Redis restarted", time.Since(start))
	testutil.Eventually(t, 5*time.Second, "registry_up", func() bool {
		return metrics.Gather(t, r0.Server().Metrics()).Get("kas_agent_registry_up") == 1
	})
	h.streamsClosed()
}

// Every replica is restarted in turn (graceful stop, start) under a
// steady load through the balancer: the agent moves on GoAway and not one
// request fails.
func TestReplicasRollingRestartLosesNoRequest(t *testing.T) {
	h := newHA(t, 3)
	h.startAgent(h.c.AgentAddress())
	url := h.c.ProxyURL(haAgent)
	testutil.Eventually(t, 10*time.Second, "first request", func() bool { c, _, _ := h.get(url, haAlice); return c == 200 })

	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, b, err := getAsKubectl(url+"/api/v1/pods", haAlice)
				if err != nil || code != 200 {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%d %v %s", code, err, b))
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	// served waits until n more requests have been answered: load runs
	// before, while and after each replica is down.
	served := func(n int64, when string) {
		t.Helper()
		from := ok.Load() + failed.Load()
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%d requests %s", n, when), func() bool { return ok.Load()+failed.Load() >= from+n })
	}
	for _, r := range h.c.Replicas {
		served(20, fmt.Sprintf("before replica %d stops", r.Index))
		r.Stop()
		served(10, fmt.Sprintf("while replica %d is down", r.Index))
		r.Start()
		testutil.Eventually(t, 10*time.Second, "agent connected", func() bool { return h.c.ConnectedSessions(haAgent) >= 1 })
	}
	served(20, "after the roll")
	cancel()
	wg.Wait()
	t.Logf("%d requests during the roll, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d requests failed during the rolling restart; first: %v", failed.Load(), failures[:min(5, len(failures))])
	}
	if ok.Load() < 50 {
		t.Errorf("only %d requests went through", ok.Load())
	}
	h.streamsClosed()
}

// Replicas with different private API secrets: the receiving replica says
// what to fix instead of passing the peer's 401 on as the caller's.
func TestReplicasSecretMismatch(t *testing.T) {
	other := filepath.Join(t.TempDir(), "other-secret")
	if err := os.WriteFile(other, []byte(strings.Repeat("z", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHAWith(t, 2, func(i int, cfg *kas.Config) {
		if i == 1 {
			cfg.PrivateAPI.AuthenticationSecretFile = other
		}
	})
	h.startAgent(h.c.Replicas[0].AgentAddress())
	for range 25 { // more than the failed-authentication burst
		code, _, body := h.get(h.c.Replicas[1].ProxyURL(haAgent), haAlice)
		if code != 502 || !strings.Contains(body, "every replica needs the same private_api.authentication_secret_file") {
			t.Fatalf("via the replica with another secret: %d %s", code, body)
		}
	}
	h.streamsClosed()
}
