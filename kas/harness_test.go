package kas

import (
	"path/filepath"
	"testing"
	"time"

	"kubetunnel/gitops/gitrepo"
	"kubetunnel/internal/testpki"
	"kubetunnel/internal/testutil"
	"kubetunnel/tunnel"
)

const (
	agentToken = "agent-token-0123456789"
	agentName  = "prod"
	aliceToken = "alice-token-0123456789"
	bobToken   = "bob-token-0123456789"
)

func repoEntry(id, url string) gitrepo.Repository { return gitrepo.Repository{ID: id, URL: url} }

// fastSession makes dead links show up in about a second.
var fastSession = tunnel.SessionConfig{KeepAliveInterval: 300 * time.Millisecond, KeepAliveTimeout: 700 * time.Millisecond}

// env is one kas and its config repository. Tests of kas with agentk
// (the real one) are in internal/integration; here an agent is a bare
// tunnel session and gRPC client (gitops_harness_test.go).
type env struct {
	t    *testing.T
	repo *testutil.GitRepo
	cfg  *Config
	// caFile is set when the agent listener uses TLS.
	caFile string
	kas    *Server
	kasLog *testutil.LogSink
	stop   func()
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
	e.cfg.Repositories = append(e.cfg.Repositories, repoEntry("group/config", e.repo.URL()))
	if scheme == "wss" || scheme == "grpcs" {
		l := &e.cfg.Agent.Listen
		l.CertificateFile, l.KeyFile, e.caFile = testpki.MustIssue(t, "127.0.0.1", "kas.test")
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

func (e *env) waitConnected(n int) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, "agent sessions", func() bool { return e.kas.ConnectedSessions(agentName) == n })
}

// proxyURL is the kubeconfig server URL for the agent.
func (e *env) proxyURL() string {
	return "http://" + e.cfg.Agent.KubernetesAPI.Listen.Address + "/agents/" + agentName
}
