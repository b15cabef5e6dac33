package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kubetunnel/agentk"
	"kubetunnel/internal/testpki"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/kas"
)

const goodConfig = `user_access:
  access_as:
    user: {}
observability:
  logging:
    level: debug
`

// The agent connects over every transport and follows its config.yaml:
// a new commit is applied, a broken one is refused and the last good one
// kept, with the bad key named in both logs.
func TestAgentConnectsAndFollowsConfig(t *testing.T) {
	for _, scheme := range []string{"ws", "wss", "grpc", "grpcs"} {
		t.Run(scheme, func(t *testing.T) {
			e := newEnv(t, scheme)
			first := e.repo.Commit("config", map[string]string{kas.AgentConfigPath(agentName): goodConfig})
			e.start()
			a := e.startAgent(nil)
			e.waitConnected(1)
			tu.Eventually(t, 10*time.Second, "first config", func() bool { c, _ := a.Config(); return c == first })
			if _, cfg := a.Config(); cfg.UserAccess.AccessAs.User == nil || cfg.Observability.Logging.Level != "debug" {
				t.Fatalf("config not delivered: %+v", cfg)
			}
			if !a.log.Contains("Config: new commit") || !a.log.Contains(first) {
				t.Errorf("agent log lacks 'Config: new commit' with %s:\n%s", first, a.log)
			}

			second := e.repo.Commit("change", map[string]string{kas.AgentConfigPath(agentName): strings.Replace(goodConfig, "debug", "warn", 1)})
			tu.Eventually(t, 10*time.Second, "second config", func() bool { c, _ := a.Config(); return c == second })

			broken := e.repo.Commit("broken", map[string]string{kas.AgentConfigPath(agentName): "gitops:\n  manifest_projectz: []\n"})
			tu.Eventually(t, 10*time.Second, "agent to log the broken config", func() bool {
				return a.log.Contains("Config: invalid config.yaml") && a.log.Contains(broken)
			})
			if c, cfg := a.Config(); c != second || cfg == nil {
				t.Errorf("agent runs %s after a broken commit, want the last good %s", c, second)
			}
			for name, log := range map[string]*tu.LogSink{"agent": a.log, "kas": e.kasLog} {
				if !log.Contains("manifest_projectz") || !log.Contains("line 2") {
					t.Errorf("%s log does not name the bad key and line:\n%s", name, log)
				}
				if log.Contains(agentToken) {
					t.Errorf("%s log contains the agent token", name)
				}
			}
			a.stop()
			e.waitConnected(0)
		})
	}
}

// Each way a connection is refused gives the agent a message that says
// what to fix, and never leaks the token.
func TestAgentRefusals(t *testing.T) {
	e := newEnv(t, "ws")
	e.start()
	cases := []struct {
		name   string
		mutate func(*agentk.Options)
		want   string
	}{
		{"bad token", func(o *agentk.Options) { o.Token = "not-a-registered-token" }, "unknown agent token"},
		{"token of no agent", func(o *agentk.Options) { o.Token = agentToken + "x" }, "unknown agent token"},
		{"nothing listening", func(o *agentk.Options) { o.KasAddress = "ws://" + tu.FreeAddr(t) + "/" }, "connection refused"},
		{"grpc to a websocket listener", func(o *agentk.Options) { o.KasAddress = "grpc://" + e.cfg.Agent.Listen.Address }, "use ws:// or wss://"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := e.startAgent(c.mutate)
			tu.Eventually(t, 5*time.Second, "refusal in the agent log", func() bool { return a.log.Contains(c.want) })
			a.stop()
			if n := e.kas.ConnectedSessions(agentName); n != 0 {
				t.Errorf("a refused agent is registered (%d sessions)", n)
			}
			if a.log.Contains(agentToken) || e.kasLog.Contains(agentToken) || e.kasLog.Contains("not-a-registered-token") {
				t.Error("token in logs")
			}
		})
	}
	// A wrong scheme is caught before any dial.
	if _, err := agentk.New(&agentk.Options{KasAddress: "https://kas.example.com", Token: "x"}, nil, nil); err == nil ||
		!strings.Contains(err.Error(), "use wss://, ws://, grpcs:// or grpc://") {
		t.Errorf("wrong scheme: %v", err)
	}
	if v := e.metric("kas_tunnel_handshakes_total", "result", "unauthorized"); v < 2 {
		t.Errorf("unauthorized handshakes = %v, want at least 2", v)
	}
}

// kas is killed and restarted five times; the agent is back every time.
func TestKasRestarts(t *testing.T) {
	e := newEnv(t, "grpc")
	e.start()
	a := e.startAgent(nil)
	e.waitConnected(1)
	for i := range 5 {
		e.stop()
		e.start()
		e.waitConnected(1)
		tu.Eventually(t, 10*time.Second, "agent config after restart", func() bool { c, _ := a.Config(); return c != "" })
		t.Logf("restart %d: agent back", i+1)
	}
}

// A link that goes silent (packets dropped, no FIN or RST) is detected by
// keepalive on both ends and the agent reconnects.
func TestSilentLinkCutDetected(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for keepalives to time out: not in -short")
	}
	e := newEnv(t, "grpc")
	e.start()
	px := newBlackholeProxy(t, e.cfg.Agent.Listen.Address)
	a := e.startAgent(func(o *agentk.Options) { o.KasAddress = "grpc://" + px.addr })
	e.waitConnected(1)
	px.blackhole()
	start := time.Now()
	// kas notices the dead session, and a new connection (the proxy
	// forwards new connections again) brings the agent back.
	tu.Eventually(t, 10*time.Second, "agent to reconnect", func() bool { return px.accepted.Load() >= 2 && e.kas.ConnectedSessions(agentName) == 1 })
	if !a.log.Contains("Connection to kas lost") {
		t.Errorf("agent did not log the lost connection:\n%s", a.log)
	}
	t.Logf("dead link detected and replaced in %v", time.Since(start))
}

// GoAway rotation at max_connection_age: requests through the tunnel keep
// succeeding while the connection is replaced several times.
func TestGoAwayRotationLosesNoRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("rotates connections under load for seconds: not in -short")
	}
	e := newEnv(t, "ws")
	e.cfg.Agent.Listen.MaxConnectionAge = 700 * time.Millisecond
	e.start()
	a := e.startAgent(nil)
	e.waitConnected(1)
	tu.Eventually(t, 10*time.Second, "config", func() bool { _, c := a.Config(); return c != nil })
	rotations := func() float64 {
		return e.metric("kas_tunnel_handshakes_total", "result", "ok")
	}
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := roundTripToAgent(e); err != nil {
					failed.Add(1)
					t.Errorf("request through the tunnel failed: %v", err)
					return
				}
				ok.Add(1)
			}
		}()
	}
	tu.Eventually(t, 15*time.Second, "three rotations", func() bool { return rotations() >= 4 })
	cancel()
	wg.Wait()
	t.Logf("%d requests, %d failed, %v connections", ok.Load(), failed.Load(), rotations())
	if ok.Load() == 0 {
		t.Fatal("no request went through")
	}
	tu.Eventually(t, 5*time.Second, "streams to close", func() bool {
		return e.metric("kas_tunnel_streams_open", "direction", "to_agent") == 0
	})
}

// roundTripToAgent sends one request through the kas proxy, as kubectl
// would, and expects the stand-in API server's answer.
func roundTripToAgent(e *env) error {
	req, _ := http.NewRequest(http.MethodGet, e.proxyURL()+"/api/v1/namespaces", nil)
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kas answered %s: %s", resp.Status, body)
	}
	return err
}

// blackholeProxy forwards TCP to a target until blackhole() makes every
// existing connection silently drop data (no FIN, no RST), like a NAT
// table entry that expired.
type blackholeProxy struct {
	addr     string
	target   string
	dead     atomic.Bool
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []*holeConn
}

type holeConn struct{ dead atomic.Bool }

func newBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{addr: ln.Addr().String(), target: target}
	var wg sync.WaitGroup
	var open []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			hc := &holeConn{}
			p.mu.Lock()
			p.conns = append(p.conns, hc)
			p.mu.Unlock()
			mu.Lock()
			open = append(open, c, up)
			mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						dst.Close()
						return
					}
					if hc.dead.Load() {
						continue // swallow: the link is silent
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
				}
			}
			wg.Add(2)
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return p
}

// blackhole silences every connection open now; new ones work.
func (p *blackholeProxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.dead.Store(true)
	}
}

// Every listener speaks TLS when given a certificate: here both
// observability listeners, whose /readyz also tells whether agentk is
// connected.
func TestObservabilityOverTLS(t *testing.T) {
	cert, key, caFile := testpki.MustIssue(t, "127.0.0.1")
	e := newEnv(t, "ws")
	e.cfg.Observability.Listen.CertificateFile, e.cfg.Observability.Listen.KeyFile = cert, key
	e.start()
	a := e.startAgent(func(o *agentk.Options) { o.ObservabilityCertFile, o.ObservabilityKeyFile = cert, key })
	e.waitConnected(1)
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	get := func(url string) (int, string) {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	<-a.Ready()
	tu.Eventually(t, 5*time.Second, "agentk ready", func() bool {
		code, _ := get("https://" + a.ObservabilityAddr().String() + "/readyz")
		return code == 200
	})
	if code, body := get("https://" + e.kas.Addr("observability").String() + "/metrics"); code != 200 || !strings.Contains(body, "kas_connected_agents 1") {
		t.Errorf("kas metrics over TLS: %d, kas_connected_agents 1 missing", code)
	}
	e.stop()
	tu.Eventually(t, 10*time.Second, "agentk not ready without kas", func() bool {
		code, body := get("https://" + a.ObservabilityAddr().String() + "/readyz")
		return code == 503 && strings.Contains(body, "not connected to kas")
	})
}
