package load

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/agentk"
	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/internal/testutil/redisserver"
	"kubetunnel/internal/testutil/tcplb"
	"kubetunnel/kas"
)

// The load: make test runs the full size (about 90 s in all); shrink it
// while working on the harness, e.g. -load.duration=10s -load.agents=100.
var (
	numAgents   = flag.Int("load.agents", 1000, "agents connected at once")
	concurrency = flag.Int("load.concurrency", 200, "proxied requests in flight at once")
	duration    = flag.Duration("load.duration", 60*time.Second, "how long the request load runs")
	numReplicas = flag.Int("load.replicas", 3, "kas replicas (behind a TCP load balancer, sharing a real Redis)")
)

const (
	userName  = "load"
	userToken = "load-user-token-0123456789"
	// saToken is every agentk's credential towards the stand-in API server.
	saToken = "load-agentk-sa-token"
)

func agentName(i int) string  { return fmt.Sprintf("agent-%04d", i) }
func agentToken(i int) string { return fmt.Sprintf("load-agent-token-%04d-0123456789", i) }

// TestLoad connects many agents to kas and sends a steady request load
// through kas to random agents: no request may fail. Each agent is the
// real agentk (agentk.New and Run: tunnel, config stream, request
// forwarding) against a stand-in API server; kas is the real binary, so
// its /metrics tell what the agents cost it.
func TestLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	backend := newBackend(t)
	k := startCluster(t, *numReplicas, *numAgents)

	base := k.scrape(t)
	t.Logf("kas (%d replicas) before agents: %s", *numReplicas, base)

	// Agents connect, a hundred at a time like a fleet coming back after
	// a kas restart.
	start := time.Now()
	agents := startAgents(t, ctx, k.agentURL(), backend.URL, *numAgents)
	testutil.Eventually(t, 2*time.Minute, "every agent connected and configured", func() bool {
		return k.scrape(t).sum("kas_connected_agents") == float64(*numAgents) && agents.allConfigured()
	})
	t.Logf("%d agents connected and configured in %v", *numAgents, time.Since(start).Round(time.Millisecond))
	// Not a wait for an event: the idle cost is measured after a settling
	// period, so connection-time garbage and the config streams do not
	// count in it.
	time.Sleep(3 * time.Second)
	idle := k.scrape(t)
	t.Logf("kas with %d agents connected, idle: %s; agents per replica: %v", *numAgents, idle, k.perReplica(t, "kas_connected_agents"))

	// kas is scraped once more half-way through the load.
	var loaded fleetMetrics
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		time.Sleep(*duration / 2) // the measurement's moment, not a wait
		loaded, _ = k.tryScrape()
	}()
	res := runLoad(t, k.apiURL(), *numAgents, *concurrency, *duration)
	<-scraped
	if loaded == nil {
		t.Fatal("kas /metrics did not answer under load")
	}
	t.Logf("kas under load: %s", loaded)
	after := k.scrape(t)
	if *numReplicas > 1 {
		t.Logf("LOAD RESULT requests forwarded to the replica holding the agent: %.0f of %d", after.sum("kas_peer_forwards_total"), res.total)
	}

	n := float64(*numAgents)
	t.Logf("LOAD RESULT replicas=%d agents=%d concurrency=%d duration=%v requests=%d failed=%d rps=%.0f p50=%v p90=%v p99=%v max=%v",
		*numReplicas, *numAgents, *concurrency, *duration, res.total, res.failed, float64(res.total)/duration.Seconds(),
		res.pct(50), res.pct(90), res.pct(99), res.pct(100))
	t.Logf("LOAD RESULT per connected agent (idle - before, /%d): heap_inuse=%.1f KiB rss=%.1f KiB goroutines=%.1f",
		*numAgents, (idle.sum("go_memstats_heap_inuse_bytes")-base.sum("go_memstats_heap_inuse_bytes"))/n/1024,
		(idle.sum("process_resident_memory_bytes")-base.sum("process_resident_memory_bytes"))/n/1024,
		(idle.sum("go_goroutines")-base.sum("go_goroutines"))/n)
	t.Logf("LOAD RESULT kas totals (all replicas): idle heap_inuse=%.0f MiB rss=%.0f MiB goroutines=%.0f; under load heap_inuse=%.0f MiB rss=%.0f MiB goroutines=%.0f",
		idle.sum("go_memstats_heap_inuse_bytes")/(1<<20), idle.sum("process_resident_memory_bytes")/(1<<20), idle.sum("go_goroutines"),
		loaded.sum("go_memstats_heap_inuse_bytes")/(1<<20), loaded.sum("process_resident_memory_bytes")/(1<<20), loaded.sum("go_goroutines"))

	if res.total == 0 {
		t.Fatal("no request was sent")
	}
	if res.failed > 0 {
		t.Errorf("%d of %d requests failed; first: %s", res.failed, res.total, res.firstErr)
	}
	// kas agrees: every request it counted was a 200.
	if non200 := after.sum("kas_proxy_requests_total") - after.sum("kas_proxy_requests_total", "code", "200"); non200 > 0 {
		t.Errorf("kas counted %v proxied requests that were not 200", non200)
	}

	start = time.Now()
	cancel()
	agents.wait()
	t.Logf("agents stopped in %v", time.Since(start).Round(time.Millisecond))
	testutil.Eventually(t, 30*time.Second, "agents gone from kas", func() bool {
		m := k.scrape(t)
		return m.sum("kas_connected_agents") == 0 && m.sum("kas_tunnel_streams_open", "direction", "to_agent") == 0 &&
			m.sum("kas_tunnel_streams_open", "direction", "from_agent") == 0 && m.sum("kas_proxy_inflight") == 0
	})
}

// backend stands in for every agent's API server: a small JSON answer.
func newBackend(t *testing.T) *httptest.Server {
	body := []byte(`{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}`)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+saToken {
			http.Error(w, "not agentk", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// cluster is the kas replicas, and with more than one, the Redis they
// share and TCP load balancers in front of their agent and Kubernetes API
// listeners, as a Kubernetes Service would be.
type cluster struct {
	replicas       []*kasProc
	agentLB, apiLB *tcplb.LB
}

// kasProc is one kas binary running.
type kasProc struct {
	agentAddr, apiAddr, obsAddr string
	cmd                         *exec.Cmd
	done                        chan struct{}
	logPath                     string
}

func (c *cluster) agentURL() string {
	if c.agentLB != nil {
		return "ws://" + c.agentLB.Addr() + "/"
	}
	return "ws://" + c.replicas[0].agentAddr + "/"
}

func (c *cluster) apiURL() string {
	if c.apiLB != nil {
		return "http://" + c.apiLB.Addr()
	}
	return "http://" + c.replicas[0].apiAddr
}

// startCluster builds kas and runs n replicas with agents agents in their
// config.
func startCluster(t *testing.T, n, agents int) *cluster {
	t.Helper()
	dir := t.TempDir()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/kas")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building kas: %v\n%s", err, out)
	}
	var common strings.Builder
	common.WriteString("agents:\n")
	for i := range agents {
		fmt.Fprintf(&common, "  - name: %s\n    token_sha256: [%q]\n", agentName(i), kas.HashToken(agentToken(i)))
	}
	fmt.Fprintf(&common, "users:\n  - name: %s\n    token_sha256: [%q]\n    agents:\n", userName, kas.HashToken(userToken))
	for i := range agents {
		fmt.Fprintf(&common, "      - %s\n", agentName(i))
	}
	if n > 1 {
		rs := redisserver.Start(t)
		secret := filepath.Join(dir, "private-api-secret")
		if err := os.WriteFile(secret, []byte("load-test-private-api-secret-0123456789abcdef"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&common, "redis:\n  address: %s\n  key_prefix: load\n", rs.Addr)
		common.WriteString("private_api:\n  authentication_secret_file: " + secret + "\n  listen:\n    address: {private}\n")
	}
	c := &cluster{}
	for i := range n {
		c.replicas = append(c.replicas, startKas(t, filepath.Join(dir, "kas"), filepath.Join(dir, fmt.Sprintf("replica-%d", i)), common.String()))
	}
	if n > 1 {
		var agentAddrs, apiAddrs []string
		for _, k := range c.replicas {
			agentAddrs = append(agentAddrs, k.agentAddr)
			apiAddrs = append(apiAddrs, k.apiAddr)
		}
		var err error
		if c.agentLB, err = tcplb.New(agentAddrs...); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.agentLB.Close() })
		if c.apiLB, err = tcplb.New(apiAddrs...); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.apiLB.Close() })
	}
	return c
}

func startKas(t *testing.T, bin, dir, common string) *kasProc {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ports, err := testutil.FreeAddrs(4)
	if err != nil {
		t.Fatal(err)
	}
	k := &kasProc{agentAddr: ports[0], apiAddr: ports[1], obsAddr: ports[2], done: make(chan struct{}), logPath: filepath.Join(dir, "kas.log")}
	cfg := fmt.Sprintf(`agent:
  listen:
    address: %s
    drain_timeout: 5s
  kubernetes_api:
    listen:
      address: %s
observability:
  listen:
    address: %s
git:
  cache_dir: %s
`, k.agentAddr, k.apiAddr, k.obsAddr, filepath.Join(dir, "cache")) + strings.ReplaceAll(common, "{private}", ports[3])
	cfgPath := filepath.Join(dir, "kas.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(k.logPath)
	if err != nil {
		t.Fatal(err)
	}
	// warn: the audit line per proxied request would otherwise be most of
	// what kas does here, and a log pipeline is not what is measured.
	k.cmd = exec.Command(bin, "--config", cfgPath, "--log-level", "warn")
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(k.done)
		k.cmd.Wait()
		logf.Close()
	}()
	t.Cleanup(func() {
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.done:
		case <-time.After(20 * time.Second):
			_ = k.cmd.Process.Kill()
			<-k.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(k.logPath)
			t.Logf("kas %s log (tail):\n%s", k.agentAddr, tail(string(b), 40))
		}
	})
	testutil.Eventually(t, 30*time.Second, "kas /readyz", func() bool {
		select {
		case <-k.done:
			b, _ := os.ReadFile(k.logPath)
			t.Fatalf("kas exited:\n%s", b)
		default:
		}
		resp, err := http.Get("http://" + k.obsAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return k
}

// scrape reads every replica's /metrics.
func (c *cluster) scrape(t *testing.T) fleetMetrics {
	t.Helper()
	m, err := c.tryScrape()
	if err != nil {
		t.Fatalf("scraping kas: %v", err)
	}
	return m
}

func (c *cluster) tryScrape() (fleetMetrics, error) {
	var out fleetMetrics
	for _, k := range c.replicas {
		m, err := metrics.Scrape("http://" + k.obsAddr + "/metrics")
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// perReplica is one series on each replica.
func (c *cluster) perReplica(t *testing.T, name string) []float64 {
	t.Helper()
	var out []float64
	for _, m := range c.scrape(t) {
		out = append(out, m.Get(name))
	}
	return out
}

// fleetMetrics is one scrape of each replica; its values are summed over
// the replicas.
type fleetMetrics []metrics.Families

// sum adds up the series of family whose labels include labels (name,
// value, …) on every replica.
func (f fleetMetrics) sum(family string, labels ...string) float64 {
	var v float64
	for _, m := range f {
		v += m.Sum(family, labels...)
	}
	return v
}

func (f fleetMetrics) String() string {
	return fmt.Sprintf("connected=%.0f heap_inuse=%.1f MiB rss=%.1f MiB goroutines=%.0f",
		f.sum("kas_connected_agents"), f.sum("go_memstats_heap_inuse_bytes")/(1<<20),
		f.sum("process_resident_memory_bytes")/(1<<20), f.sum("go_goroutines"))
}

// fleet is the agents running in this process.
type fleet struct {
	agents []*agentk.Agent
	wg     sync.WaitGroup
}

func startAgents(t *testing.T, ctx context.Context, kasURL, apiURL string, n int) *fleet {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	f := &fleet{}
	for i := range n {
		a, err := agentk.New(&agentk.Options{
			KasAddress:          kasURL,
			Token:               agentToken(i),
			ObservabilityListen: "127.0.0.1:0",
			REST:                &rest.Config{Host: apiURL, BearerToken: saToken},
		}, logger, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.agents = append(f.agents, a)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := a.Run(ctx); err != nil {
				t.Errorf("agent %d: %v", i, err)
			}
		}()
		if i%100 == 99 {
			time.Sleep(100 * time.Millisecond) // the fleet's arrival rate, not a wait
		}
	}
	return f
}

func (f *fleet) allConfigured() bool {
	for _, a := range f.agents {
		if _, c := a.Config(); c == nil {
			return false
		}
	}
	return true
}

func (f *fleet) wait() { f.wg.Wait() }

// result is what the load saw.
type result struct {
	total, failed int64
	firstErr      string
	latencies     []time.Duration // sorted
}

func (r *result) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies)-1) * p / 100)
	return r.latencies[i]
}

// runLoad keeps c requests in flight for d, each a GET to a random agent,
// as kubectl get namespaces would send it.
func runLoad(t *testing.T, apiURL string, agents, c int, d time.Duration) *result {
	tr := &http.Transport{MaxIdleConns: c, MaxIdleConnsPerHost: c}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		res      result
		mu       sync.Mutex
		failed   atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for time.Now().Before(deadline) {
				i := rand.IntN(agents)
				req, _ := http.NewRequest("GET", apiURL+"/agents/"+agentName(i)+"/api/v1/namespaces", nil)
				req.Header.Set("Authorization", "Bearer "+userToken)
				start := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("%s: %s", agentName(i), resp.Status)
					}
				}
				lat = append(lat, time.Since(start))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(res.latencies)
	res.total = int64(len(res.latencies))
	res.failed = failed.Load()
	if e, ok := firstErr.Load().(string); ok {
		res.firstErr = e
	}
	return &res
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
