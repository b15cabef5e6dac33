package kas

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/agentk"
	"kubetunnel/internal/testpki"
	"kubetunnel/internal/testutil"
	"kubetunnel/tunnel"
)

const (
	agentToken = "agent-token-0123456789"
	agentName  = "prod"
	aliceToken = "alice-token-0123456789"
	bobToken   = "bob-token-0123456789"
	// saToken is agentk's own credential towards the stand-in API server.
	saToken = "agentk-service-account-token"
)

// fastSession makes dead links show up in about a second.
var fastSession = tunnel.SessionConfig{KeepAliveInterval: 300 * time.Millisecond, KeepAliveTimeout: 700 * time.Millisecond}

// env is one kas and its config repository.
type env struct {
	t    *testing.T
	repo *testutil.GitRepo
	cfg  *Config
	// caFile is set when the agent listener uses TLS.
	caFile string
	kas    *Server
	kasLog *testutil.LogSink
	stop   func()
	// api stands in for the cluster's API server behind agentk.
	api *fakeAPI
}

// newEnv makes a config with one agent whose config project is a fresh
// git repo; scheme picks the agent listener's transport.
func newEnv(t *testing.T, scheme string) *env {
	t.Helper()
	e := &env{t: t, repo: testutil.NewGitRepo(t)}
	e.repo.Commit("initial", map[string]string{"README.md": "config project\n"})
	ws := scheme == "ws" || scheme == "wss"
	e.cfg = &Config{
		Agent: AgentSection{
			Listen:        AgentListen{Address: "127.0.0.1:0", Websocket: &ws, DrainTimeout: 5 * time.Second},
			Configuration: PollSection{PollPeriod: 100 * time.Millisecond},
		},
		Observability: ObservabilitySection{Listen: Listen{Address: "127.0.0.1:0"}},
		Git:           GitSection{CacheDir: filepath.Join(t.TempDir(), "cache")},
		Agents:        []AgentEntry{{Name: agentName, ConfigProject: "group/config", TokenSHA256: []string{HashToken(agentToken)}}},
		Users: []UserEntry{
			{Name: "alice", TokenSHA256: []string{HashToken(aliceToken)}, Groups: []string{"developers"}, Agents: []string{agentName}},
			{Name: "bob", TokenSHA256: []string{HashToken(bobToken)}},
		},
	}
	e.cfg.Agent.KubernetesAPI.Listen.Address = "127.0.0.1:0"
	e.api = newFakeAPI(t)
	e.cfg.Repositories = append(e.cfg.Repositories, repoEntry("group/config", e.repo.URL()))
	if scheme == "wss" || scheme == "grpcs" {
		ca, err := testpki.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		cert, key, caFile, err := ca.Issue(t.TempDir(), "127.0.0.1", "kas.test")
		if err != nil {
			t.Fatal(err)
		}
		e.cfg.Agent.Listen.CertificateFile, e.cfg.Agent.Listen.KeyFile, e.caFile = cert, key, caFile
	}
	e.cfg.Default()
	return e
}

// start runs kas; the agent listener keeps its port across restarts.
func (e *env) start() {
	e.t.Helper()
	e.startWith(nil)
}

// address is what agentk's --kas-address would be.
func (e *env) address() string {
	return e.cfg.Agent.Listen.AgentkAddress(e.cfg.Agent.Listen.Address)
}

type runningAgent struct {
	*agentk.Agent
	log  *testutil.LogSink
	stop func()
}

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
	a, err := agentk.New(opts, logger, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
	ra := &runningAgent{Agent: a, log: sink}
	var once sync.Once
	ra.stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(ra.stop)
	return ra
}

func (e *env) waitConnected(n int) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, "agent sessions", func() bool { return e.kas.ConnectedSessions(agentName) == n })
}

// proxyURL is the kubeconfig server URL for the agent.
func (e *env) proxyURL() string {
	return "http://" + e.cfg.Agent.KubernetesAPI.Listen.Address + "/agents/" + agentName
}
