package kas

import (
	"path/filepath"
	"testing"
	"time"

	"kubetunnel/gitops/gitrepo"
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
	t      *testing.T
	repo   *testutil.GitRepo
	cfg    *Config
	kas    *Server
	kasLog *testutil.LogSink
	stop   func()
}

// newEnv makes a config with one agent whose config project is a fresh
// git repo; scheme picks the agent listener's transport: "ws" (WebSocket)
// or "grpc" (raw TCP), both without TLS.
func newEnv(t *testing.T, scheme string) *env {
	t.Helper()
	e := &env{t: t, repo: testutil.NewGitRepo(t)}
	e.repo.Commit("initial", map[string]string{"README.md": "config project\n"})
	ws := scheme == "ws"
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
