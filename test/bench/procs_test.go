package bench

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kubetunnel/internal/testutil/stack"
)

// BenchmarkGetLatencyProcesses is BenchmarkGetLatency's paired GET with
// kas and agentk as a user runs them: the real binaries, each in a process
// of its own (bin/ of $KUBETUNNEL_BENCH_BIN, else built by the first run,
// ~30 s), the client reaching kas as kubectl does (client-go's transport
// over TLS, with the kubeconfig `kas kubeconfig` prints), kas writing its
// audit line to a log file. The in-process
// benchmark holds the client, kas and agentk in one Go process, and
// leaves out the TLS hop and the log write. It also reports the CPU time
// of the kas and agentk processes per proxied GET (from /proc).
func BenchmarkGetLatencyProcesses(b *testing.B) {
	e := sharedProxyEnv(b)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The stack's agentk logs in to the API server as "agentk"; this
	// control plane knows that user by the benchmark's token.
	stack.AgentkToken = agentkAPIToken
	dir := b.TempDir()
	st, err := stack.New(ctx, dir, os.Getenv("KUBETUNNEL_BENCH_BIN"), e.cp)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Stop()
	if err := st.StartKas(ctx); err != nil {
		b.Fatal(err)
	}
	if err := st.StartAgentk(ctx); err != nil {
		b.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	// kas serves HTTP/1.1 only (its TLS listeners offer no h2), so this
	// is what kubectl gets too.
	viaKas, err := rest.HTTPClientFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer viaKas.CloseIdleConnections()
	get := func(c *http.Client) error {
		resp, err := c.Get(cfg.Host + smallObject)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return &statusError{resp.StatusCode}
		}
		return nil
	}
	// agentk is ready once kas proxies a request through it.
	deadline := time.Now().Add(30 * time.Second)
	for err := get(viaKas); err != nil; err = get(viaKas) {
		if time.Now().After(deadline) {
			b.Fatalf("no request through the kas process: %v\nkas log:\n%s\nagentk log:\n%s", err, st.KasLog(), st.AgentLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	direct := e.targets()[0]
	warmUp(b, e, direct)
	paths := []func() error{
		func() error {
			_, err := e.getOK(direct, smallObject, nil)
			return err
		},
		func() error { return get(viaKas) },
	}
	for _, p := range paths[1:] {
		for range 50 {
			if err := p(); err != nil {
				b.Fatal(err)
			}
		}
	}
	// The two take turns, in an order that swaps every iteration. The kas
	// and agentk processes' CPU time over the loop, divided by the GETs
	// through them, is their CPU per proxied GET (direct GETs do not
	// touch them; their idle work in the loop's seconds is included).
	lats := make([]latencies, len(paths))
	cpuBefore, cpuErr := childCPU("kas", "agentk")
	gets := 0
	for n := 0; b.Loop(); n++ {
		gets++
		for k := range paths {
			i := (k + n) % len(paths)
			start := time.Now()
			if err := paths[i](); err != nil {
				b.Fatal(err)
			}
			lats[i].add(time.Since(start))
		}
	}
	if cpuErr == nil {
		var cpuAfter map[string]time.Duration
		if cpuAfter, cpuErr = childCPU("kas", "agentk"); cpuErr == nil {
			n := float64(gets)
			kas := cpuAfter["kas"] - cpuBefore["kas"]
			agentk := cpuAfter["agentk"] - cpuBefore["agentk"]
			b.ReportMetric(float64(kas)/1e3/n, "kas-cpu-us/get")
			b.ReportMetric(float64(agentk)/1e3/n, "agentk-cpu-us/get")
			b.ReportMetric(float64(kas+agentk)/1e3/n, "procs-cpu-us/get")
		}
	}
	if cpuErr != nil {
		b.Logf("no CPU per GET of the kas and agentk processes: %v", cpuErr)
	}
	d := lats[0].percentile(50)
	b.ReportMetric(float64(d)/1e3, "direct-p50-us")
	b.ReportMetric(float64(lats[1].percentile(50))/1e3, "via-kas-p50-us")
	b.ReportMetric(float64(lats[1].percentile(50)-d)/1e3, "added-p50-us")
	b.ReportMetric(float64(lats[1].percentile(99)-lats[0].percentile(99))/1e3, "added-p99-us")
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }
