package realnode

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kubetunnel/internal/testutil/stack"
	"kubetunnel/test/realnode/images"
)

// AgentkNamespace is where InstallAgentk installs agentk.
const AgentkNamespace = "gitlab-agent"

// ListenKasOnNode moves a stack's agent listener from loopback to the
// node's address, so that agentk in a Pod can dial kas. Call it before
// StartKas.
func ListenKasOnNode(s *stack.Stack) error {
	_, port, ok := strings.Cut(s.AgentAddr, ":")
	if !ok {
		return fmt.Errorf("kas agent address %q has no port", s.AgentAddr)
	}
	addr := NodeIP + ":" + port
	cfg, err := os.ReadFile(s.KasConfig)
	if err != nil {
		return err
	}
	moved := strings.Replace(string(cfg), "address: "+s.AgentAddr, "address: "+addr, 1)
	if moved == string(cfg) {
		return fmt.Errorf("%s: no agent listener at %s", s.KasConfig, s.AgentAddr)
	}
	if err := os.WriteFile(s.KasConfig, []byte(moved), 0o600); err != nil {
		return err
	}
	s.AgentAddr = addr
	return nil
}

// InstallAgentk installs chart/agentk as release "agentk" in
// AgentkNamespace the way a user would, with the local agentk image
// (imagePullPolicy Never), the stack's agent token and kas's agent
// listener, plus extraArgs as more agentk flags, and waits until agentk
// is Ready (connected to kas).
func (c *Cluster) InstallAgentk(ctx context.Context, s *stack.Stack, extraArgs []string, timeout time.Duration) (*Release, error) {
	token, err := os.ReadFile(filepath.Join(s.Dir, "agent-token"))
	if err != nil {
		return nil, err
	}
	api, err := url.Parse(c.CP.URL)
	if err != nil {
		return nil, err
	}
	args := make([]any, len(extraArgs))
	for i, a := range extraArgs {
		args[i] = a
	}
	return c.InstallChart(ctx, "chart/agentk", "agentk", AgentkNamespace, map[string]any{
		"image":      map[string]any{"repository": images.AgentkRepository, "tag": images.Tag, "pullPolicy": "Never"},
		"kasAddress": "ws://" + s.AgentAddr + "/",
		"token":      map[string]any{"value": strings.TrimSpace(string(token))},
		// No kube-proxy on this node: the kubernetes Service's address
		// leads nowhere, so agentk is told the API server's own.
		"env": []any{
			map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": api.Hostname()},
			map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": api.Port()},
		},
		"extraArgs": args,
	}, timeout)
}
