package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"kubetunnel/tunnel/mux"

	"kubetunnel/agentk"
	"kubetunnel/gitops/gitrepo"
	"kubetunnel/internal/testpki"
	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/kascluster"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/kas"
	"kubetunnel/tunnel"
	"kubetunnel/version"
)

const (
	agentToken = "agent-token-0123456789"
	agentName  = "prod"
	aliceToken = "alice-token-0123456789"
	bobToken   = "bob-token-0123456789"
	// saToken is agentk's own credential towards the stand-in API server
	// (replicas present it with a suffix to be told apart).
	saToken = "agentk-service-account-token"
)

// fastSession makes dead links show up in about a second.
var fastSession = tunnel.SessionConfig{KeepAliveInterval: 300 * time.Millisecond, KeepAliveTimeout: 700 * time.Millisecond}

func repoEntry(id, url string) gitrepo.Repository { return gitrepo.Repository{ID: id, URL: url} }

// env is one kas, its config repository and the API server behind agentk.
type env struct {
	t    *testing.T
	repo *testutil.GitRepo
	cfg  *kas.Config
	// caFile is set when the agent listener uses TLS.
	caFile string
	// replica runs kas; kas and kasLog are its server and log since the
	// last start.
	replica *kascluster.Replica
	kas     *kas.Server
	kasLog  *testutil.LogSink
	// api stands in for the cluster's API server behind agentk.
	api *fakeAPI
}

// newEnv writes kas's config as a user would: one agent whose config
// project is a fresh git repo, users alice (who may use it) and bob (who
// may not); scheme picks the agent listener's transport.
func newEnv(t *testing.T, scheme string) *env {
	t.Helper()
	e := &env{t: t, repo: testutil.NewGitRepo(t), api: newFakeAPI(t)}
	e.repo.Commit("initial", map[string]string{"README.md": "config project\n"})
	cfg, err := kas.ParseConfig(fmt.Appendf(nil, `
agent:
  listen: {address: 127.0.0.1:0, websocket: %t, drain_timeout: 5s}
  configuration: {poll_period: 100ms}
  kubernetes_api: {listen: {address: 127.0.0.1:0}}
observability: {listen: {address: 127.0.0.1:0}}
git: {cache_dir: %q}
repositories: [{id: group/config, url: %q}]
agents: [{name: %s, config_project: group/config, token_sha256: [%s]}]
users:
- {name: alice, token_sha256: [%[6]s], groups: [developers], agents: [%[4]s]}
- {name: bob, token_sha256: [%[7]s]}
`, scheme == "ws" || scheme == "wss", filepath.Join(t.TempDir(), "cache"), e.repo.URL(),
		agentName, kas.HashToken(agentToken), kas.HashToken(aliceToken), kas.HashToken(bobToken)))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	if scheme == "wss" || scheme == "grpcs" {
		l := &e.cfg.Agent.Listen
		l.CertificateFile, l.KeyFile, e.caFile = testpki.MustIssue(t, "127.0.0.1", "kas.test")
	}
	return e
}

// start runs kas; its listeners keep their ports across restarts.
func (e *env) start() {
	e.t.Helper()
	e.startWith(nil)
}

// startWith is start with a hook that runs between kas.New and Run (to
// set the Server's timers or config file) on this and every later start.
func (e *env) startWith(hook func(*kas.Server)) {
	e.t.Helper()
	if e.replica == nil {
		e.replica = kascluster.Run(e.t, e.cfg, kascluster.Options{Session: fastSession, Hook: hook})
	} else {
		e.replica.Start()
	}
	e.kas, e.kasLog = e.replica.Server(), e.replica.Log
}

// stop stops kas gracefully and waits.
func (e *env) stop() { e.replica.Stop() }

// address is what agentk's --kas-address would be.
func (e *env) address() string {
	return e.cfg.Agent.Listen.AgentkAddress(e.cfg.Agent.Listen.Address)
}

// dialer dials kas's agent listener with the agent's token, as agentk's
// first step.
func (e *env) dialer() *tunnel.Dialer {
	return &tunnel.Dialer{
		Address: e.address(),
		Hello:   tunnel.Hello{Token: agentToken, AgentVersion: version.Version, Protocol: tunnel.MaxProtocol},
		Session: fastSession,
	}
}

// dialRogue opens an authenticated tunnel session that does nothing else
// (no gRPC stream, no proxy server): a misbehaving or stuck agent. It is
// closed when the test ends.
func (e *env) dialRogue() *mux.Session {
	e.t.Helper()
	sess, err := e.dialer().Dial(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { sess.Close() })
	return sess
}

// openStreams opens n streams on sess, as an agent may open its gRPC
// streams; they are closed when the test ends.
func openStreams(t *testing.T, sess *mux.Session, n int) []net.Conn {
	t.Helper()
	streams := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, st := range streams {
			st.Close()
		}
	})
	for range n {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatalf("open stream: %v", err)
		}
		streams = append(streams, st)
	}
	return streams
}

// startWatch opens a watch at url as the holder of token and checks that
// its first n events arrive in order; the caller closes the body.
func startWatch(t *testing.T, url, token string, n int) io.ReadCloser {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for i := range n {
		if !sc.Scan() || !strings.Contains(sc.Text(), fmt.Sprintf(`"n":%d`, i)) {
			resp.Body.Close()
			t.Fatalf("watch event %d: %q %v", i, sc.Text(), sc.Err())
		}
	}
	return resp.Body
}

// runningAgent is an agentk running in the test process.
type runningAgent struct {
	*agentk.Agent
	log  *testutil.LogSink
	stop func()
}

// runAgent runs agentk with opts until stop is called or the test ends.
func runAgent(t *testing.T, opts *agentk.Options, logger *slog.Logger, sink *testutil.LogSink) *runningAgent {
	t.Helper()
	a, err := agentk.New(opts, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	ra := &runningAgent{Agent: a, log: sink}
	var once sync.Once
	ra.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(ra.stop)
	return ra
}

// startAgent runs agentk against this kas with the stand-in API server;
// mutate may change its options first.
func (e *env) startAgent(mutate func(*agentk.Options)) *runningAgent {
	e.t.Helper()
	opts := &agentk.Options{
		KasAddress:          e.address(),
		Token:               agentToken,
		KasCACertFile:       e.caFile,
		ObservabilityListen: "127.0.0.1:0",
		REST:                &rest.Config{Host: e.api.URL, BearerToken: saToken},
		ReconnectInitial:    20 * time.Millisecond,
		ReconnectMax:        300 * time.Millisecond,
		Session:             fastSession,
	}
	if mutate != nil {
		mutate(opts)
	}
	logger, sink := testutil.NewLogger(e.t)
	return runAgent(e.t, opts, logger, sink)
}

func (e *env) waitConnected(n int) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, "agent sessions", func() bool { return e.kas.ConnectedSessions(agentName) == n })
}

// proxyURL is the kubeconfig server URL for the agent.
func (e *env) proxyURL() string {
	return "http://" + e.cfg.Agent.KubernetesAPI.Listen.Address + "/agents/" + agentName
}

// obsURL is the observability listener's base URL.
func (e *env) obsURL() string { return "http://" + e.kas.Addr("observability").String() }

// call sends a request through the kas proxy with a token and returns the
// status and body.
func (e *env) call(method, path, token string, body io.Reader, hdr map[string]string) (int, []byte) {
	e.t.Helper()
	if token != "" {
		hdr = maps.Clone(hdr)
		if hdr == nil {
			hdr = map[string]string{}
		}
		hdr["Authorization"] = "Bearer " + token
	}
	code, b := testutil.Do(e.t, method, e.proxyURL()+path, body, hdr)
	return code, unquote(b)
}

// unquote turns a Kubernetes Status body into "kind=Status: message" so
// tests match the message a user reads; other bodies pass unchanged.
func unquote(b []byte) []byte {
	var st struct{ Kind, Message string }
	if json.Unmarshal(b, &st) == nil && st.Kind == "Status" {
		return []byte(`"kind":"Status": ` + st.Message)
	}
	return b
}

// callSeen GETs pods through the proxy and returns what the API server saw.
func (e *env) callSeen(token string, hdr map[string]string) seen {
	e.t.Helper()
	code, body := e.call("GET", "/api/v1/pods?limit=1", token, nil, hdr)
	if code != 200 {
		e.t.Fatalf("status %d: %s", code, body)
	}
	var s seen
	if err := json.Unmarshal(body, &s); err != nil {
		e.t.Fatalf("%v: %s", err, body)
	}
	return s
}

// startWithConfig runs kas and an agent whose config.yaml is cfg, and
// waits until the agent has it.
func startWithConfig(t *testing.T, cfg string) (*env, *runningAgent) {
	e := newEnv(t, "ws")
	commit := e.repo.Commit("config", map[string]string{kas.AgentConfigPath(agentName): cfg})
	e.start()
	a := e.startAgent(nil)
	testutil.Eventually(t, 10*time.Second, "agent config", func() bool { c, _ := a.Config(); return c == commit })
	return e, a
}

// sessionRemotes lists the remote addresses of agent's live connections
// as the status API shows them to the holder of token: a connection that
// is replaced shows up under a new address.
func (e *env) sessionRemotes(agent, token string) []string {
	e.t.Helper()
	code, body := testutil.Do(e.t, "GET", e.obsURL()+"/api/v1/status", nil, map[string]string{"Authorization": "Bearer " + token})
	var rep kas.StatusReport
	if err := json.Unmarshal(body, &rep); code != http.StatusOK || err != nil {
		e.t.Fatalf("GET /api/v1/status: %d %v\n%s", code, err, body)
	}
	var remotes []string
	for _, a := range rep.Agents {
		if a.Name == agent {
			for _, s := range a.Sessions {
				remotes = append(remotes, s.Remote)
			}
		}
	}
	return remotes
}

// metric is one series of this kas's metrics (labels as name, value pairs).
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	return metrics.Gather(e.t, e.kas.Metrics()).Get(name, labels...)
}
