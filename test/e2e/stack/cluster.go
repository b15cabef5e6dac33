package stack

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/internal/testutil/tcplb"
)

// Cluster is several kas replicas sharing a Redis, with TCP load
// balancers in front of their agent and Kubernetes API listeners, and
// one agentk that connects through the balancer: a high-availability
// install on loopback. The embedded Stack holds the repository, tokens
// and TLS; its AgentAddr and Kubeconfig go through the balancers.
type Cluster struct {
	*Stack
	Replicas       []*Replica
	AgentLB, APILB *tcplb.LB
	RedisAddr      string
}

// Replica is one kas process of a Cluster.
type Replica struct {
	Index                                 int
	AgentAddr, APIAddr, ObsAddr, PrivAddr string
	Config                                string // its config file
	// Kubeconfig reaches the agent through this replica alone.
	Kubeconfig string

	binDir string
	log    string
	mu     sync.Mutex // guards p
	p      *proc
}

// NewCluster prepares n replicas in dir that use the Redis at redisAddr.
// Nothing runs until StartKas and StartAgentk.
func NewCluster(ctx context.Context, dir, binDir string, cp *controlplane.ControlPlane, n int, redisAddr string, opts ...Options) (*Cluster, error) {
	s, err := New(ctx, dir, binDir, cp, opts...)
	if err != nil {
		return nil, err
	}
	base, err := os.ReadFile(s.KasConfig)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := os.ReadFile(s.Kubeconfig)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	secretFile := filepath.Join(dir, "private-api-secret")
	if err := os.WriteFile(secretFile, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return nil, err
	}
	c := &Cluster{Stack: s, RedisAddr: redisAddr}
	var agentAddrs, apiAddrs []string
	// All replicas' ports in one call: ports chosen one replica at a time
	// could repeat, since a replica binds only when it starts.
	all, err := testutil.FreeAddrs(4 * n)
	if err != nil {
		return nil, err
	}
	for i := range n {
		ports := all[4*i : 4*i+4]
		r := &Replica{Index: i, AgentAddr: ports[0], APIAddr: ports[1], ObsAddr: ports[2], PrivAddr: ports[3], binDir: s.BinDir,
			Config: filepath.Join(dir, fmt.Sprintf("kas-%d.yaml", i)), log: filepath.Join(dir, fmt.Sprintf("kas-%d.log", i))}
		cfg := strings.NewReplacer(s.AgentAddr, r.AgentAddr, s.APIAddr, r.APIAddr, s.ObsAddr, r.ObsAddr,
			filepath.Join(dir, "kas-cache"), filepath.Join(dir, fmt.Sprintf("kas-cache-%d", i))).Replace(string(base))
		cfg += fmt.Sprintf(`redis:
  address: %s
  refresh_period: 1s
  agent_ttl: 10s
private_api:
  listen:
    address: %s
  authentication_secret_file: %s
`, redisAddr, r.PrivAddr, secretFile)
		if err := os.WriteFile(r.Config, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		r.Kubeconfig = filepath.Join(dir, fmt.Sprintf("kubeconfig-via-kas-%d", i))
		if err := os.WriteFile(r.Kubeconfig, []byte(strings.ReplaceAll(string(kubeconfig), s.APIAddr, r.APIAddr)), 0o600); err != nil {
			return nil, err
		}
		c.Replicas = append(c.Replicas, r)
		agentAddrs = append(agentAddrs, r.AgentAddr)
		apiAddrs = append(apiAddrs, r.APIAddr)
	}
	if c.AgentLB, err = tcplb.New(agentAddrs...); err != nil {
		return nil, err
	}
	if c.APILB, err = tcplb.New(apiAddrs...); err != nil {
		c.AgentLB.Close()
		return nil, err
	}
	// agentk and kubectl go through the balancers.
	s.AgentAddr = c.AgentLB.Addr()
	if err := os.WriteFile(s.Kubeconfig, []byte(strings.ReplaceAll(string(kubeconfig), s.APIAddr, c.APILB.Addr())), 0o600); err != nil {
		return nil, err
	}
	s.APIAddr = c.APILB.Addr()
	return c, nil
}

// StartAll starts every replica.
func (c *Cluster) StartAll(ctx context.Context) error {
	for _, r := range c.Replicas {
		if err := r.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops agentk, every replica and the balancers.
func (c *Cluster) Stop() {
	_ = c.StopAgentk()
	for _, r := range c.Replicas {
		_ = r.Stop()
	}
	c.AgentLB.Close()
	c.APILB.Close()
}

// Holding returns the replicas that have the agent connected, from their
// kas_connected_agents metric.
func (c *Cluster) Holding() []*Replica {
	var out []*Replica
	for _, r := range c.Replicas {
		if n, err := r.Metric("kas_connected_agents"); err == nil && n > 0 {
			out = append(out, r)
		}
	}
	return out
}

// Logs is every replica's log, for a failed test.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, r := range c.Replicas {
		fmt.Fprintf(&b, "--- kas replica %d:\n%s\n", r.Index, r.Log())
	}
	return b.String()
}

// Start runs the replica (POD_IP tells it its private API address, as a
// Deployment does) and waits for /readyz.
func (r *Replica) Start(ctx context.Context) error {
	p, err := startEnv(filepath.Join(r.binDir, "kas"), r.log, []string{"POD_IP=127.0.0.1"}, "--config", r.Config)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.p = p
	r.mu.Unlock()
	return waitHTTP(ctx, "http://"+r.ObsAddr+"/readyz", 30*time.Second, p, r.log)
}

func (r *Replica) proc() *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

// Stop sends SIGTERM and waits for kas to drain and exit.
func (r *Replica) Stop() error { return stop(r.proc(), syscall.SIGTERM) }

// Kill is kill -9.
func (r *Replica) Kill() error { return stop(r.proc(), syscall.SIGKILL) }

// Log is the replica's output so far (across restarts).
func (r *Replica) Log() string { return readFile(r.log) }

// Metric reads an unlabelled metric (or the sum of its series) from the
// replica's /metrics.
func (r *Replica) Metric(name string) (float64, error) {
	resp, err := http.Get("http://" + r.ObsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum, found = sum+v, true
	}
	if !found {
		return 0, fmt.Errorf("%s: no metric %s", r.ObsAddr, name)
	}
	return sum, sc.Err()
}
