package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/agentk"
	"kubetunnel/kas"
)

const (
	agentName  = "bench"
	agentToken = "bench-agent-token-0123456789"
	userName   = "alice"
	userToken  = "bench-user-token-0123456789"
)

// discardLogger formats every record as production would and writes it
// nowhere: kas formats an audit line per proxied request, and that cost
// belongs in the numbers; a terminal's speed does not.
func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// kasConfig is a standalone kas with one agent and one user allowed to
// use it. The agent has no config project, so it gets the default
// config.yaml and no git repository is involved. Every other setting
// (yamux window, keepalives, stream pool) is the production default.
// websocket false is the raw TCP transport (grpc://).
func kasConfig(cacheDir string, websocket bool) *kas.Config {
	cfg := &kas.Config{
		Agent: kas.AgentSection{
			Listen: kas.AgentListen{Address: "127.0.0.1:0", Websocket: &websocket},
			KubernetesAPI: kas.KubernetesAPISection{
				Listen: kas.Listen{Address: "127.0.0.1:0"},
			},
		},
		Observability: kas.ObservabilitySection{Listen: kas.Listen{Address: "127.0.0.1:0"}},
		Git:           kas.GitSection{CacheDir: cacheDir},
		Agents:        []kas.AgentEntry{{Name: agentName, TokenSHA256: []string{kas.HashToken(agentToken)}}},
		Users: []kas.UserEntry{{
			Name: userName, TokenSHA256: []string{kas.HashToken(userToken)}, Agents: []string{agentName},
		}},
	}
	cfg.Default()
	return cfg
}

// runningKas is one kas.Server.Run in a goroutine.
type runningKas struct {
	*kas.Server
	websocket bool
	cancel    context.CancelFunc
	done      chan error
}

// startKas runs kas and returns once every listener is bound.
func startKas(cfg *kas.Config) (*runningKas, error) {
	srv, err := kas.New(cfg, discardLogger())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &runningKas{Server: srv, websocket: *cfg.Agent.Listen.Websocket, cancel: cancel, done: make(chan error, 1)}
	go func() { k.done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		return k, nil
	case err := <-k.done:
		cancel()
		return nil, fmt.Errorf("kas stopped before it was ready: %v", err)
	}
}

// stop cancels Run and waits for it.
func (k *runningKas) stop() error {
	k.cancel()
	return <-k.done
}

// agentURL is agentk's --kas-address for this kas.
func (k *runningKas) agentURL() string {
	if !k.websocket {
		return "grpc://" + k.Addr("agent").String()
	}
	return "ws://" + k.Addr("agent").String() + "/"
}

// proxyURL is the kubeconfig server URL for the agent through kas.
func (k *runningKas) proxyURL() string {
	return "http://" + k.Addr("kubernetes_api").String() + "/agents/" + agentName
}

// runningAgent is one agentk.Agent.Run in a goroutine.
type runningAgent struct {
	*agentk.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

// startAgentk runs agentk with the production defaults for reconnect
// backoff and yamux; restCfg is its identity towards the API server.
func startAgentk(kasAddress string, restCfg *rest.Config) (*runningAgent, error) {
	return startAgentkWith(kasAddress, restCfg, nil)
}

// startAgentkWith is startAgentk with options changed by mutate.
func startAgentkWith(kasAddress string, restCfg *rest.Config, mutate func(*agentk.Options)) (*runningAgent, error) {
	opts := &agentk.Options{
		KasAddress:          kasAddress,
		Token:               agentToken,
		ObservabilityListen: "127.0.0.1:0",
		REST:                restCfg,
	}
	if mutate != nil {
		mutate(opts)
	}
	a, err := agentk.New(opts, discardLogger(), nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ra.done)
		_ = a.Run(ctx)
	}()
	return ra, nil
}

func (a *runningAgent) stop() {
	a.cancel()
	<-a.done
}

// waitFor polls cond every millisecond (the resolution the reconnect
// numbers need) until it holds or timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}
