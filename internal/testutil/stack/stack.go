// Package stack runs the real kas and agentk binaries against a control
// plane, with a real git repository as the agent's config project: the
// whole product as a user runs it, for the e2e tests and `make demo`.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"kubetunnel/internal/testpki"
	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/childproc"
	"kubetunnel/internal/testutil/controlplane"
)

// Names used by the stack's config.
const (
	AgentName     = "demo"
	ConfigProject = "demo/config"
	User          = "alice"
	UserGroup     = "developers"
	// AgentkUser is agentk's identity at the API server (a static token
	// bound to cluster-admin, as upstream's default install).
	AgentkUser = "agentk"
)

// Stack is kas + agentk + a config repository in one directory.
type Stack struct {
	Dir       string
	BinDir    string
	RepoDir   string
	CP        *controlplane.ControlPlane
	AgentAddr string // kas agent listener, host:port
	APIAddr   string // kas Kubernetes API listener
	ObsAddr   string // kas observability
	AgentObs  string // agentk observability
	// UserToken is alice's token for the Kubernetes API proxy.
	UserToken string
	// Kubeconfig reaches the agent's cluster through kas as alice.
	Kubeconfig string
	// KasConfig is the kas config file.
	KasConfig string
	// CAFile verifies the Kubernetes API listener's certificate.
	CAFile string
	// AgentArgs are extra agentk flags.
	AgentArgs []string

	agentToken string
	plainAPI   bool
	kas, agent *childproc.Process
	kasLog     string
	agentLog   string
}

// AgentkToken is the static API server token agentk runs with; pass a
// controlplane.User with it in Options.Users.
var AgentkToken = "agentk-" + randomHex(16)

// New prepares a stack in dir: binaries built into bin (or taken from
// binDir when set), a config repository, kas config and tokens.
// Options change the kas config a Stack writes.
type Options struct {
	// PollPeriod is kas's git poll period (default 1s).
	PollPeriod time.Duration
	// WebhookSecret, when set, enables the push webhook with this secret.
	WebhookSecret string
	// PlainAPI serves kas's Kubernetes API listener on plain HTTP (for
	// benchmarks that compare front doors alike). kubectl sends no token
	// over plain HTTP, so the Stack then has no Kubeconfig: callers send
	// UserToken to APIURL themselves.
	PlainAPI bool
}

func New(ctx context.Context, dir, binDir string, cp *controlplane.ControlPlane, opts ...Options) (*Stack, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.PollPeriod == 0 {
		o.PollPeriod = time.Second
	}
	s := &Stack{Dir: dir, CP: cp, RepoDir: filepath.Join(dir, "config-repo"), UserToken: "u-" + randomHex(20), agentToken: "a-" + randomHex(20)}
	if binDir == "" {
		root, err := controlplane.RepoRoot()
		if err != nil {
			return nil, err
		}
		binDir = filepath.Join(dir, "bin")
		build := exec.CommandContext(ctx, "go", "build", "-o", binDir+"/", "./cmd/kas", "./cmd/agentk")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building kas and agentk: %v\n%s", err, out)
		}
	}
	s.BinDir = binDir
	ports, err := testutil.FreeAddrs(3)
	if err != nil {
		return nil, err
	}
	s.AgentAddr, s.APIAddr, s.ObsAddr = ports[0], ports[1], ports[2]
	if err := s.initRepo(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "agent-token"), []byte(s.agentToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "user-token"), []byte(s.UserToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	// kubectl sends tokens only over TLS, so the Kubernetes API listener
	// gets a certificate from a throwaway CA.
	ca, err := testpki.NewCA()
	if err != nil {
		return nil, err
	}
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return nil, err
	}
	certFile, keyFile, caFile, err := ca.Issue(tlsDir, "127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	s.CAFile = caFile
	s.KasConfig = filepath.Join(dir, "kas.yaml")
	cfg := fmt.Sprintf(`agent:
  listen:
    address: %s
    drain_timeout: 5s
  configuration:
    poll_period: {poll}
  gitops:
    poll_period: {poll}
  kubernetes_api:
    listen:
      address: %s{tls}
observability:
  listen:
    address: %s
git:
  cache_dir: %s
  webhook_secret_file: {webhook}
repositories:
  - id: %s
    url: file://%s
agents:
  - name: %s
    config_project: %s
    token_sha256: [%q]
users:
  - name: %s
    token_sha256: [%q]
    groups: [%s]
    agents: [%s]
`, s.AgentAddr, s.APIAddr, s.ObsAddr, filepath.Join(dir, "kas-cache"), ConfigProject, s.RepoDir,
		AgentName, ConfigProject, sha(s.agentToken), User, sha(s.UserToken), UserGroup, AgentName)
	webhookFile := ""
	if o.WebhookSecret != "" {
		webhookFile = filepath.Join(dir, "webhook-secret")
		if err := os.WriteFile(webhookFile, []byte(o.WebhookSecret), 0o600); err != nil {
			return nil, err
		}
	}
	tlsKeys := fmt.Sprintf("\n      certificate_file: %s\n      key_file: %s", certFile, keyFile)
	s.plainAPI = o.PlainAPI
	if o.PlainAPI {
		tlsKeys = ""
	}
	cfg = strings.NewReplacer("{poll}", o.PollPeriod.String(), "{webhook}", fmt.Sprintf("%q", webhookFile), "{tls}", tlsKeys).Replace(cfg)
	if err := os.WriteFile(s.KasConfig, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if o.PlainAPI {
		return s, nil
	}
	kc, err := exec.CommandContext(ctx, filepath.Join(binDir, "kas"), "kubeconfig", "--config", s.KasConfig,
		"--agent", AgentName, "--user", User, "--token-file", filepath.Join(dir, "user-token"), "--ca-file", caFile).Output()
	if err != nil {
		return nil, fmt.Errorf("kas kubeconfig: %w", err)
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig-via-kas")
	if err := os.WriteFile(s.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stack) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = s.RepoDir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=demo", "GIT_AUTHOR_EMAIL=demo@example.com",
		"GIT_COMMITTER_NAME=demo", "GIT_COMMITTER_EMAIL=demo@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func (s *Stack) initRepo() error {
	if err := os.MkdirAll(s.RepoDir, 0o755); err != nil {
		return err
	}
	if _, err := s.git("init", "-q", "-b", "main"); err != nil {
		return err
	}
	_, err := s.Commit("initial", map[string]string{"README.md": "The agent's config project.\n"})
	return err
}

// APIURL is the agent's cluster through kas's Kubernetes API listener,
// as a kubeconfig's server: https, or http with Options.PlainAPI.
func (s *Stack) APIURL() string {
	scheme := "https"
	if s.plainAPI {
		scheme = "http"
	}
	return scheme + "://" + s.APIAddr + "/agents/" + AgentName
}

// AgentConfigPath is the agent's config.yaml inside the repository.
func AgentConfigPath() string { return filepath.Join(".gitlab", "agents", AgentName, "config.yaml") }

// Commit writes files into the config repository and commits them.
func (s *Stack) Commit(msg string, files map[string]string) (string, error) {
	for path, content := range files {
		full := filepath.Join(s.RepoDir, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return "", err
		}
		if _, err := s.git("add", path); err != nil {
			return "", err
		}
	}
	if _, err := s.git("commit", "-q", "--allow-empty", "-m", msg); err != nil {
		return "", err
	}
	return s.git("rev-parse", "HEAD")
}

// StartKas runs kas and waits until it answers /readyz.
func (s *Stack) StartKas(ctx context.Context) error {
	s.kasLog = filepath.Join(s.Dir, "kas.log")
	cmd, err := start(filepath.Join(s.BinDir, "kas"), s.kasLog, "--config", s.KasConfig)
	if err != nil {
		return err
	}
	s.kas = cmd
	return waitHTTP(ctx, "http://"+s.ObsAddr+"/readyz", 30*time.Second, cmd, s.kasLog)
}

// StartAgentk runs agentk with a kubeconfig for its own API server user,
// or on an existing cluster (kind) with that cluster's kubeconfig.
func (s *Stack) StartAgentk(ctx context.Context) error {
	kubeconfig, err := s.CP.KubeconfigFor(controlplane.User{Name: AgentkUser, Token: AgentkToken})
	if errors.Is(err, controlplane.ErrExistingCluster) {
		kubeconfig, err = s.CP.KubeconfigPath, nil
	}
	if err != nil {
		return err
	}
	obs, err := testutil.FreeAddrs(1)
	if err != nil {
		return err
	}
	s.AgentObs = obs[0]
	s.agentLog = filepath.Join(s.Dir, "agentk.log")
	cmd, err := start(filepath.Join(s.BinDir, "agentk"), s.agentLog, append([]string{
		"--kas-address", "ws://" + s.AgentAddr + "/",
		"--token-file", filepath.Join(s.Dir, "agent-token"),
		"--kubeconfig", kubeconfig,
		"--observability-listen", s.AgentObs}, s.AgentArgs...)...)
	if err != nil {
		return err
	}
	s.agent = cmd
	return waitHTTP(ctx, "http://"+s.AgentObs+"/readyz", 30*time.Second, cmd, s.agentLog)
}

// StopKas sends SIGTERM and waits (kas drains, then exits).
func (s *Stack) StopKas() error { return stop(s.kas, syscall.SIGTERM) }

// KillKas is kill -9.
func (s *Stack) KillKas() error { return stop(s.kas, syscall.SIGKILL) }

// StopAgentk stops agentk.
func (s *Stack) StopAgentk() error { return stop(s.agent, syscall.SIGTERM) }

// Stop stops both.
func (s *Stack) Stop() {
	_ = s.StopAgentk()
	_ = s.StopKas()
}

// KasLog and AgentLog return the processes' output so far.
func (s *Stack) KasLog() string   { return readFile(s.kasLog) }
func (s *Stack) AgentLog() string { return readFile(s.agentLog) }

// WaitKasLog and WaitAgentLog wait up to 10 s for the log to contain
// want, as WaitLog. An INFO line may reach the log a moment after the
// request that caused it: kas and agentk write a flood of lines a window
// at a time (logging.BatchWriter).
func (s *Stack) WaitKasLog(want string) (string, bool)   { return WaitLog(s.KasLog, want) }
func (s *Stack) WaitAgentLog(want string) (string, bool) { return WaitLog(s.AgentLog, want) }

// WaitLog polls log (a process's output so far) for up to 10 s until it
// contains want, and returns what it last read and whether want was in it.
func WaitLog(log func() string, want string) (string, bool) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := log()
		if strings.Contains(out, want) {
			return out, true
		}
		if time.Now().After(deadline) {
			return out, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// start runs a kas or agentk binary; its log keeps what earlier runs of
// the same process wrote, across restarts.
func start(bin, logPath string, args ...string) (*childproc.Process, error) {
	return childproc.StartWith(childproc.Options{AppendLog: true}, filepath.Base(bin), logPath, bin, args...)
}

// stop signals the process and waits for it, killing it after 15 s.
func stop(p *childproc.Process, sig syscall.Signal) error { return p.Stop(sig, 15*time.Second) }

func waitHTTP(ctx context.Context, url string, timeout time.Duration, p *childproc.Process, logPath string) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.Done():
			return fmt.Errorf("the process exited; log:\n%s", readFile(logPath))
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready within %v; log:\n%s", url, timeout, readFile(logPath))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
