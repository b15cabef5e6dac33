package bench

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/kas"
)

// BenchmarkReconnectAfterKasRestart restarts kas once per iteration
// (cancel Run, wait for it, start a new kas on the same agent address)
// and measures, with agentk's default reconnect backoff (100 ms doubling
// to 30 s, full jitter):
//
//   - p50-ms, p99-ms: from the new kas being ready until
//     ConnectedSessions(agent) == 1;
//   - outage-p50-ms, outage-p99-ms: from the stop being asked until then,
//     which is what a kubectl user waits.
//
// Each restart gets a freshly connected agentk; one agentk through many
// restarts in a row is BenchmarkReconnectBackToBack.
//
// Run it with -benchtime 50x.
func BenchmarkReconnectAfterKasRestart(b *testing.B) {
	api := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer api.Close()
	cfg := kasConfig(b.TempDir(), true)
	k, err := startKas(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// Later incarnations bind the port the first one got.
	cfg.Agent.Listen.Address = k.Addr("agent").String()
	var ready, outage latencies
	defer func() {
		if err := k.stop(); err != nil {
			b.Errorf("kas Run: %v", err)
		}
	}()
	for b.Loop() {
		b.StopTimer()
		a, err := startAgentk(k.agentURL(), &rest.Config{Host: api.URL})
		if err != nil {
			b.Fatal(err)
		}
		waitFor(b, 10*time.Second, "agentk to connect", func() bool { return k.ConnectedSessions(agentName) == 1 })
		b.StartTimer()

		r, o := restartKas(b, &k, cfg)
		ready.add(r)
		outage.add(o)

		b.StopTimer()
		a.stop()
		waitFor(b, 10*time.Second, "agentk to disconnect", func() bool { return k.ConnectedSessions(agentName) == 0 })
		b.StartTimer()
	}
	ready.reportMillis(b)
	b.ReportMetric(float64(outage.percentile(50))/1e6, "outage-p50-ms")
	b.ReportMetric(float64(outage.percentile(99))/1e6, "outage-p99-ms")
}

// BenchmarkReconnectBackToBack is the same restart with one agentk
// throughout, so every restart comes soon after the previous one. agentk
// restarts its backoff on kas's GoAway; before it did, the waits grew
// with each restart towards 30 s (hence the cap on -benchtime, kept so a
// regression cannot make the run take ten minutes): run it with
// -benchtime 8x.
func BenchmarkReconnectBackToBack(b *testing.B) {
	if n, ok := fixedBenchtime(); !ok || n > 10 {
		b.Skip("waits grow towards 30 s per restart: run alone with -benchtime 8x")
	}
	api := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer api.Close()
	cfg := kasConfig(b.TempDir(), true)
	k, err := startKas(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Agent.Listen.Address = k.Addr("agent").String()
	defer func() {
		if err := k.stop(); err != nil {
			b.Errorf("kas Run: %v", err)
		}
	}()
	a, err := startAgentk(k.agentURL(), &rest.Config{Host: api.URL})
	if err != nil {
		b.Fatal(err)
	}
	defer a.stop()
	waitFor(b, 10*time.Second, "agentk to connect", func() bool { return k.ConnectedSessions(agentName) == 1 })

	var ready latencies
	for i := 1; b.Loop(); i++ {
		r, _ := restartKas(b, &k, cfg)
		ready.add(r)
		b.Logf("restart %d: reconnected %v after kas was ready", i, r.Round(time.Millisecond))
	}
	ready.reportMillis(b)
	b.ReportMetric(float64(ready.percentile(100))/1e6, "max-ms")
}

// restartKas stops *k, starts a new kas from cfg in its place and waits
// for the agent's session. It returns the time from the new kas being
// ready and from the stop being asked until the session is back.
func restartKas(b *testing.B, k **runningKas, cfg *kas.Config) (ready, outage time.Duration) {
	b.Helper()
	began := time.Now()
	if err := (*k).stop(); err != nil {
		b.Fatalf("kas Run: %v", err)
	}
	next, err := startKas(cfg)
	if err != nil {
		b.Fatal(err)
	}
	*k = next
	up := time.Now()
	// Past the 30 s backoff cap, so a stuck agent fails rather than hangs.
	waitFor(b, 40*time.Second, "agentk to reconnect", func() bool { return next.ConnectedSessions(agentName) == 1 })
	now := time.Now()
	return now.Sub(up), now.Sub(began)
}

// fixedBenchtime returns N when -benchtime is Nx.
func fixedBenchtime() (int, bool) {
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return 0, false
	}
	s, ok := strings.CutSuffix(f.Value.String(), "x")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
