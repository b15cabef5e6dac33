// Package kascluster runs kas in a test process: several replicas the
// way they run in production (a real redis-server as their agent
// registry, a shared private API secret, and TCP load balancers in front
// of their agent and Kubernetes API listeners), or one kas on its own.
//
//	c := kascluster.Start(t, cfg, kascluster.Options{Replicas: 3})
//	// agentk: --kas-address c.AgentAddress(); kubectl: c.ProxyURL("prod")
//	c.Replicas[0].Stop(); c.Replicas[0].Start() // a rolling restart
//
//	r := kascluster.Run(t, cfg, kascluster.Options{}) // one kas, no Redis
package kascluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/redisserver"
	"kubetunnel/internal/testutil/tcplb"
	"kubetunnel/kas"
	"kubetunnel/tunnel"
)

// Options change how a cluster starts; zero values take the defaults.
type Options struct {
	// Replicas is the number of kas replicas (default 3).
	Replicas int
	// Session sets kas.Server.Session (tunnel keepalives) on every replica.
	Session tunnel.SessionConfig
	// RedisAddr uses a running Redis instead of starting one.
	RedisAddr string
	// Mutate changes replica i's config before its first start.
	Mutate func(i int, cfg *kas.Config)
	// Hook runs on every start between kas.New and Run, to set the
	// Server's fields (timers, the config file to watch).
	Hook func(*kas.Server)
}

// Cluster is a set of running kas replicas.
type Cluster struct {
	// Redis is the registry's server (nil with Options.RedisAddr).
	Redis    *redisserver.Server
	Replicas []*Replica
	// AgentLB and APILB balance the agent and Kubernetes API listeners.
	AgentLB, APILB *tcplb.LB
}

// Replica is one kas.
type Replica struct {
	Index  int
	Config *kas.Config
	// Log collects this replica's log across restarts.
	Log *testutil.LogSink

	t       testing.TB
	session tunnel.SessionConfig
	hook    func(*kas.Server)
	// logAttrs are added to every log line (which replica).
	logAttrs []any
	mu       sync.Mutex // guards server and stop
	server   *kas.Server
	stop     func()
}

// Start runs n replicas of base (agents, users, repositories; listener
// addresses are replaced by free loopback ports) sharing one Redis.
// Everything stops when the test ends.
func Start(t testing.TB, base *kas.Config, opts Options) *Cluster {
	t.Helper()
	if opts.Replicas == 0 {
		opts.Replicas = 3
	}
	c := &Cluster{}
	redisAddr := opts.RedisAddr
	if redisAddr == "" {
		c.Redis = redisserver.Start(t)
		redisAddr = c.Redis.Addr
	}
	secretFile := filepath.Join(t.TempDir(), "private-api-secret")
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if err := os.WriteFile(secretFile, []byte(hex.EncodeToString(secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	var agentAddrs, apiAddrs []string
	for i := range opts.Replicas {
		cfg := *base
		cfg.Agent.Listen.Address = "127.0.0.1:0"
		cfg.Agent.KubernetesAPI.Listen.Address = "127.0.0.1:0"
		cfg.Observability.Listen.Address = "127.0.0.1:0"
		cfg.Git.CacheDir = filepath.Join(t.TempDir(), "cache")
		cfg.Redis = &kas.RedisSection{Address: redisAddr, RefreshPeriod: time.Second, AgentTTL: 5 * time.Second}
		cfg.PrivateAPI = &kas.PrivateAPISection{Listen: kas.Listen{Address: "127.0.0.1:0"}, AuthenticationSecretFile: secretFile}
		if opts.Mutate != nil {
			opts.Mutate(i, &cfg)
		}
		cfg.Default()
		_, sink := testutil.NewLogger(t)
		r := &Replica{Index: i, Config: &cfg, Log: sink, t: t, session: opts.Session, hook: opts.Hook, logAttrs: []any{"replica", i}}
		r.Start()
		c.Replicas = append(c.Replicas, r)
		agentAddrs = append(agentAddrs, cfg.Agent.Listen.Address)
		apiAddrs = append(apiAddrs, cfg.Agent.KubernetesAPI.Listen.Address)
	}
	var err error
	if c.AgentLB, err = tcplb.New(agentAddrs...); err != nil {
		t.Fatal(err)
	}
	if c.APILB, err = tcplb.New(apiAddrs...); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the balancers close after the test's
	// own cleanups (agents) and before the replicas stop.
	t.Cleanup(func() {
		c.AgentLB.Close()
		c.APILB.Close()
	})
	return c
}

// Run starts one kas with cfg, on its own: no Redis, no private API, no
// balancers, and its config exactly as given (defaults applied; listeners
// on port 0 get free ports, kept across restarts). Its log lines carry no
// replica attribute. It stops when the test ends.
func Run(t testing.TB, cfg *kas.Config, opts Options) *Replica {
	t.Helper()
	cfg.Default()
	_, sink := testutil.NewLogger(t)
	r := &Replica{Config: cfg, Log: sink, t: t, session: opts.Session, hook: opts.Hook}
	r.Start()
	return r
}

// AgentAddress is agentk's --kas-address through the agent balancer.
func (c *Cluster) AgentAddress() string {
	return c.Replicas[0].Config.Agent.Listen.AgentkAddress(c.AgentLB.Addr())
}

// ProxyURL is the kubeconfig server URL of agent through the balancer.
func (c *Cluster) ProxyURL(agent string) string {
	return "http://" + c.APILB.Addr() + "/agents/" + agent
}

// ConnectedSessions sums an agent's sessions over the running replicas.
func (c *Cluster) ConnectedSessions(agent string) int {
	n := 0
	for _, r := range c.Replicas {
		if s := r.Server(); s != nil {
			n += s.ConnectedSessions(agent)
		}
	}
	return n
}

// Server is the running kas (nil while stopped).
func (r *Replica) Server() *kas.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.server
}

// AgentAddress is agentk's --kas-address for this replica alone.
func (r *Replica) AgentAddress() string {
	return r.Config.Agent.Listen.AgentkAddress(r.Config.Agent.Listen.Address)
}

// ProxyURL is the kubeconfig server URL of agent on this replica alone.
func (r *Replica) ProxyURL(agent string) string {
	return "http://" + r.Config.Agent.KubernetesAPI.Listen.Address + "/agents/" + agent
}

// Start runs the replica; after the first start it keeps its ports.
func (r *Replica) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.server != nil {
		r.t.Fatalf("kas replica %d is already running", r.Index)
	}
	logger := testutil.LoggerTo(r.Log).With(r.logAttrs...)
	srv, err := kas.New(r.Config, logger)
	if err != nil {
		r.t.Fatal(err)
	}
	srv.Session = r.session
	if r.hook != nil {
		r.hook(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(ctx); err != nil {
			r.t.Errorf("kas replica %d: %v", r.Index, err)
		}
	}()
	select {
	case <-srv.Ready():
	case <-done:
		r.t.Fatalf("kas replica %d stopped before it was ready:\n%s", r.Index, r.Log)
	}
	cfg := r.Config
	cfg.Agent.Listen.Address = srv.Addr("agent").String()
	cfg.Agent.KubernetesAPI.Listen.Address = srv.Addr("kubernetes_api").String()
	cfg.Observability.Listen.Address = srv.Addr("observability").String()
	if cfg.PrivateAPI != nil {
		cfg.PrivateAPI.Listen.Address = srv.Addr("private_api").String()
	}
	r.server = srv
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	r.t.Cleanup(r.Stop)
}

// Stop stops the replica gracefully (as on SIGTERM) and waits.
func (r *Replica) Stop() {
	r.mu.Lock()
	stop := r.stop
	r.server, r.stop = nil, nil
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Healthy reports whether the replica answers /readyz.
func (r *Replica) Healthy() bool {
	resp, err := http.Get("http://" + r.Config.Observability.Listen.Address + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
