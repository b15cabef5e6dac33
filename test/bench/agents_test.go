package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/rest"

	"kubetunnel/agentk"
	"kubetunnel/kas"
)

// The agent benchmarks run kas in this process and the agents (real
// agentk.Agent instances) in a child process, the test binary started
// again with swarmEnv set: kas's memory and goroutines can then be read
// from this process alone, and the agents cost kas's process nothing.
const (
	swarmEnv      = "KUBETUNNEL_BENCH_SWARM" // "kas address|first|count"
	swarmReadyMsg = "swarm started"
)

func swarmAgentName(i int) string  { return fmt.Sprintf("swarm-%05d", i) }
func swarmAgentToken(i int) string { return fmt.Sprintf("bench-swarm-token-%05d-0123456789", i) }

// swarmKasConfig is kasConfig with n agents, each with its own name and
// token, as n clusters. Every agent of the swarm connects from 127.0.0.1,
// so the agent listener's cap per source address (1,000 by default, for
// many clusters behind one NAT) is raised to its total: with the default,
// kas refused the 10,000-agent swarm past its first 1,000 connections.
func swarmKasConfig(cacheDir string, n int) *kas.Config {
	cfg := kasConfig(cacheDir, true)
	l := &cfg.Limits.AgentListen
	l.MaxConnections = max(l.MaxConnections, n+n/10)
	l.MaxConnectionsPerSource = l.MaxConnections
	cfg.Agents = nil
	for i := range n {
		cfg.Agents = append(cfg.Agents, kas.AgentEntry{Name: swarmAgentName(i), TokenSHA256: []string{kas.HashToken(swarmAgentToken(i))}})
	}
	cfg.Users = nil
	return cfg
}

// runSwarm is the child process: it runs agents [first, first+count) of
// the swarm against the kas address until its standard input closes.
func runSwarm(spec string) int {
	var addr string
	var first, count int
	if _, err := fmt.Sscanf(spec, "%s %d %d", &addr, &first, &count); err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: want \"<kas address> <first> <count>\": %v\n", swarmEnv, spec, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	// The parent closes our stdin to stop us (or dies, which does the same).
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	done := make(chan struct{}, count)
	for i := first; i < first+count; i++ {
		a, err := agentk.New(&agentk.Options{
			KasAddress: addr,
			Token:      swarmAgentToken(i),
			// One loopback address per agent (all of 127/8 is loopback on
			// Linux): 10,000 listeners and 10,000 connections on 127.0.0.1
			// alone would run out of ephemeral ports.
			ObservabilityListen: fmt.Sprintf("127.1.%d.%d:0", i/250, i%250+1),
			// The agents never see a proxied request: any address will do.
			REST: &rest.Config{Host: "http://127.0.0.1:1"},
		}, discardLogger(), nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			if err := a.Run(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "agent %d: %v\n", i, err)
			}
			done <- struct{}{}
		}()
		// A steady start rather than all at once: the benchmarks measure
		// the agents connected, not a storm at start-up.
		if i%100 == 99 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Println(swarmReadyMsg)
	for range count {
		<-done
	}
	return 0
}

// swarm is a running child process of agents.
type swarm struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// perSwarm is how many agents one child process runs: each holds a
// connection and a listener, so 4,000 agents need some 8,000 open files,
// under common hard limits (the benchmark cannot raise a hard limit
// without privileges).
const perSwarm = 4000

// swarms is the agents of a benchmark, in as many child processes as
// they need.
type swarms []*swarm

func startSwarms(kasAddr string, n int) (swarms, error) {
	var all swarms
	for first := 0; first < n; first += perSwarm {
		s, err := startSwarm(kasAddr, first, min(perSwarm, n-first))
		if err != nil {
			return nil, errors.Join(err, all.stop())
		}
		all = append(all, s)
	}
	return all, nil
}

func (all swarms) stop() error {
	var errs []error
	for _, s := range all {
		errs = append(errs, s.stop())
	}
	return errors.Join(errs...)
}

func startSwarm(kasAddr string, first, count int) (*swarm, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", swarmEnv, kasAddr, first, count))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &swarm{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != swarmReadyMsg+"\n" {
		return nil, errors.Join(fmt.Errorf("agent swarm did not start: %q, %v", line, err), s.stop())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return s, nil
}

// stop closes the swarm's stdin and waits for it to exit; a swarm that
// takes longer than 20 s (10,000 agents winding down on a busy machine)
// is killed: it is only the load, nothing of it is measured.
func (s *swarm) stop() error {
	s.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
		return nil
	}
}

// raiseNoFileForAgents makes room for n agents: kas holds a connection
// per agent, each child process two open files per agent.
func raiseNoFileForAgents(tb testing.TB, n int) {
	tb.Helper()
	raiseNoFile(tb, uint64(max(n, 2*min(n, perSwarm))+1024))
}

// raiseNoFile raises this process's (and so its children's) limit of
// open files to n.
func raiseNoFile(tb testing.TB, n uint64) {
	tb.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	want := syscall.Rlimit{Cur: n, Max: max(n, lim.Max)}
	if n <= lim.Max {
		want.Max = lim.Max
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		tb.Fatalf("RLIMIT_NOFILE is %d (hard %d); the agent benchmarks need %d: raise it (ulimit -n %d, as root): %v", lim.Cur, lim.Max, n, n, err)
	}
}

// gauge reads a kas metric (the first series whose labels include
// label=value, or the only series when label is "").
func gauge(k *runningKas, name, label, value string) float64 {
	mfs, err := k.Metrics().Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == label && l.GetValue() == value
			}) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// waitIdle waits until n agents are connected to k and each has its gRPC
// connection (the stream agentk opens for its configuration), then a
// moment for the configuration to arrive.
func waitIdle(b *testing.B, k *runningKas, n int, timeout time.Duration) time.Duration {
	b.Helper()
	start := time.Now()
	waitForEvery(b, timeout, 50*time.Millisecond, fmt.Sprintf("%d agents to connect", n), func() bool {
		return gauge(k, "kas_connected_agents", "", "") >= float64(n) &&
			gauge(k, "kas_tunnel_streams_open", "direction", "from_agent") >= float64(n)
	})
	took := time.Since(start)
	time.Sleep(idleSettle)
	return took
}

// idleSettle is how long waitIdle waits after the agents connected.
const idleSettle = 3 * time.Second

// waitForEvery is waitFor with a polling interval.
func waitForEvery(tb testing.TB, timeout, every time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(every)
	}
}

// idleAgentCounts are the swarm sizes of BenchmarkIdleAgents.
var idleAgentCounts = []int{1000, 10000}

// BenchmarkIdleAgents measures what an idle connected agent costs kas:
// live heap (B/agent), goroutine stacks (stack-B/agent) and goroutines,
// the difference between kas before and after N agents connected, per
// agent. The goal is under 64 KiB of heap per agent, and 10,000 agents
// held by one kas.
func BenchmarkIdleAgents(b *testing.B) {
	for _, n := range idleAgentCounts {
		raiseNoFileForAgents(b, n)
		k, err := startKas(swarmKasConfig(b.TempDir(), n))
		if err != nil {
			b.Fatal(err)
		}
		before := settledMemStats()
		g0 := runtime.NumGoroutine()
		start := time.Now()
		sw, err := startSwarms(k.agentURL(), n)
		if err != nil {
			k.stop()
			b.Fatal(err)
		}
		waitIdle(b, k, n, 5*time.Minute)
		took := time.Since(start) - idleSettle
		after := settledMemStats()
		writeHeapProfile(b, n)
		g1 := runtime.NumGoroutine()
		connected := gauge(k, "kas_connected_agents", "", "")
		if err := sw.stop(); err != nil {
			b.Errorf("agent swarm: %v", err)
		}
		if err := k.stop(); err != nil {
			b.Errorf("kas Run: %v", err)
		}
		reportSub(b, "agents="+strconv.Itoa(n), map[string]float64{
			"B/agent":          float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n),
			"stack-B/agent":    float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n),
			"goroutines/agent": float64(g1-g0) / float64(n),
			"connected":        connected,
			"connect-ms":       float64(took) / 1e6,
		})
	}
}

// settledMemStats reads the memory statistics after two collections, so
// the heap holds live objects only.
func settledMemStats() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// stormAgents is the swarm size of BenchmarkReconnectStorm.
const stormAgents = 1000

// BenchmarkReconnectStorm connects 1,000 agents, restarts kas (stop:
// GoAway and drain; then a new kas on the same address, in this process)
// and measures, from the new kas being ready, when each agent is back:
// all-back-ms (the goal: within 15 s), first/p50/p99, and the most agents
// that came back within one 100 ms window, which shows whether they
// dialled in the same instant or spread out.
func BenchmarkReconnectStorm(b *testing.B) {
	n := stormAgents
	raiseNoFileForAgents(b, n)
	cfg := swarmKasConfig(b.TempDir(), n)
	k, err := startKas(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Agent.Listen.Address = k.Addr("agent").String()
	sw, err := startSwarms(k.agentURL(), n)
	if err != nil {
		k.stop()
		b.Fatal(err)
	}
	defer func() {
		if err := sw.stop(); err != nil {
			b.Errorf("agent swarm: %v", err)
		}
		if err := k.stop(); err != nil {
			b.Errorf("kas Run: %v", err)
		}
	}()
	waitIdle(b, k, n, 2*time.Minute)

	stopAsked := time.Now()
	if err := k.stop(); err != nil {
		b.Fatalf("kas Run: %v", err)
	}
	stopped := time.Now()
	if k, err = startKas(cfg); err != nil {
		b.Fatal(err)
	}
	ready := time.Now()
	back := make([]time.Duration, n)
	left := n
	deadline := ready.Add(2 * time.Minute)
	for left > 0 && time.Now().Before(deadline) {
		for i := range n {
			if back[i] == 0 && k.ConnectedSessions(swarmAgentName(i)) > 0 {
				back[i] = time.Since(ready)
				left--
			}
		}
		time.Sleep(time.Millisecond)
	}
	var got []time.Duration
	for _, d := range back {
		if d > 0 {
			got = append(got, d)
		}
	}
	slices.Sort(got)
	m := map[string]float64{
		"connected": float64(len(got)),
		"stop-ms":   float64(stopped.Sub(stopAsked)) / 1e6,
	}
	if len(got) > 0 {
		var lat latencies
		lat.add(got...)
		m["first-ms"] = float64(got[0]) / 1e6
		m["p50-ms"] = float64(lat.percentile(50)) / 1e6
		m["p99-ms"] = float64(lat.percentile(99)) / 1e6
		m["all-back-ms"] = float64(got[len(got)-1]) / 1e6
		m["max-per-100ms"] = float64(maxInWindow(got, 100*time.Millisecond))
	}
	if left > 0 {
		b.Errorf("%d of %d agents not back within 2 minutes", left, n)
		m["all-back-ms"] = float64(2 * time.Minute / time.Millisecond)
	}
	reportSub(b, "agents="+strconv.Itoa(n), m)
}

// maxInWindow is the most sorted times that fall within one window.
func maxInWindow(sorted []time.Duration, window time.Duration) int {
	best, lo := 0, 0
	for hi := range sorted {
		for sorted[hi]-sorted[lo] >= window {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// heapProfileEnv names a directory where BenchmarkIdleAgents writes kas's
// heap profile with the agents connected (heap-<agents>.pprof), to see
// what an idle agent's bytes are: go tool pprof -sample_index=inuse_space.
const heapProfileEnv = "KUBETUNNEL_BENCH_HEAP_PROFILE"

func writeHeapProfile(b *testing.B, agents int) {
	dir := os.Getenv(heapProfileEnv)
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%d.pprof", agents)))
	if err != nil {
		b.Errorf("%s: %v", heapProfileEnv, err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Errorf("heap profile: %v", err)
	}
}
