package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kubetunnel/internal/testpki"
	"kubetunnel/internal/testutil/stack"
	"kubetunnel/kas"
)

// BenchmarkGetLatencyProcesses is BenchmarkGetLatency's paired GET with
// kas and agentk as a user runs them: the real binaries, each in a process
// of its own (bin/ of $KUBETUNNEL_BENCH_BIN, else built by the first run,
// ~30 s), kas writing its audit line to a log file. Both front doors
// (kas's and remotedialer's) are plain HTTP, as in BenchmarkRealAPIPaths;
// with frontEnv set to "tls" both are TLS, and the client reaches kas as
// kubectl does (client-go's transport with the kubeconfig `kas kubeconfig`
// prints). The in-process benchmark holds the client, kas and agentk in
// one Go process, and leaves out the log write. It also reports the CPU time
// of the kas and agentk processes per proxied GET (from /proc), and the
// same for rancher/remotedialer's server and agent, each run as a process
// of its own (this test binary in rdProcEnv mode) in front of the same API
// server, set up as in BenchmarkRealAPIPaths (plain HTTP front door, the
// server holding the token, TLS to the API server through the tunnel),
// its GETs taking turns with kas's: procs/rd-procs-cpu is kas+agentk's CPU
// per GET over remotedialer's. The *-cs/get metrics are each process's
// context switches per GET (its threads blocking or being woken: the
// hand-offs and waiting system calls it makes), from /proc.
func BenchmarkGetLatencyProcesses(b *testing.B) {
	e := sharedProxyEnv(b)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The stack's agentk logs in to the API server as "agentk"; this
	// control plane knows that user by the benchmark's token.
	stack.AgentkToken = agentkAPIToken
	dir := b.TempDir()
	front := os.Getenv(frontEnv)
	if front != "" && front != "tls" {
		b.Fatalf("%s=%q: the only value is \"tls\"", frontEnv, front)
	}
	st, err := stack.New(ctx, dir, os.Getenv("KUBETUNNEL_BENCH_BIN"), e.cp, stack.Options{PlainAPI: front == "",
		// kas's own poll period, not the tests' 1 s: git polls are not
		// the proxy's work, and a user's kas polls this often.
		PollPeriod: kas.DefaultPollPeriod})
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
	kasURL := st.APIURL()
	var viaKas *http.Client
	if front == "tls" {
		// kas serves HTTP/1.1 only (its TLS listeners offer no h2), so
		// this client-go transport is what kubectl gets too.
		cfg, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
		if err != nil {
			b.Fatal(err)
		}
		if viaKas, err = rest.HTTPClientFor(cfg); err != nil {
			b.Fatal(err)
		}
		kasURL = cfg.Host
	} else {
		viaKas = &http.Client{Transport: &bearerTransport{token: st.UserToken, rt: &http.Transport{MaxIdleConnsPerHost: 100}}}
	}
	defer viaKas.CloseIdleConnections()
	get := func(c *http.Client) error { return readOK(c.Get(kasURL + smallObject)) }
	// agentk is ready once kas proxies a request through it.
	deadline := time.Now().Add(30 * time.Second)
	for err := get(viaKas); err != nil; err = get(viaKas) {
		if time.Now().After(deadline) {
			b.Fatalf("no request through the kas process: %v\nkas log:\n%s\nagentk log:\n%s", err, st.KasLog(), st.AgentLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// remotedialer's server and agent, each a process of its own, in
	// front of the same API server.
	caFile := filepath.Join(dir, "apiserver-ca.crt")
	if err := os.WriteFile(caFile, e.cp.CAData, 0o600); err != nil {
		b.Fatal(err)
	}
	rdSpec, rdScheme := "server "+e.cp.URL+" "+caFile, "http"
	rdTransport := &http.Transport{MaxIdleConnsPerHost: 100}
	if front == "tls" {
		pki, err := testpki.NewCA()
		if err != nil {
			b.Fatal(err)
		}
		frontDir := filepath.Join(dir, "rd-front")
		if err := os.Mkdir(frontDir, 0o700); err != nil {
			b.Fatal(err)
		}
		certFile, keyFile, frontCA, err := pki.Issue(frontDir, "127.0.0.1")
		if err != nil {
			b.Fatal(err)
		}
		pem, err := os.ReadFile(frontCA)
		if err != nil {
			b.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		rdTransport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		rdSpec += " " + certFile + " " + keyFile
		rdScheme = "https"
	}
	rdServer, rdAddrs, err := startRdProc(rdSpec, true)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := rdServer.stop(); err != nil {
			b.Error(err)
		}
	}()
	rdFront, rdConnect, _ := strings.Cut(rdAddrs, " ")
	rdAgent, _, err := startRdProc("agent "+rdConnect, false)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := rdAgent.stop(); err != nil {
			b.Error(err)
		}
	}()
	viaRd := &http.Client{Transport: rdTransport}
	defer viaRd.CloseIdleConnections()
	rdURL := rdScheme + "://" + rdFront
	getRd := func() error {
		status, _, err := e.get(viaRd, rdURL+smallObject, nil)
		if err == nil && status != http.StatusOK {
			err = &statusError{status}
		}
		return err
	}
	deadline = time.Now().Add(30 * time.Second)
	for err := getRd(); err != nil; err = getRd() {
		if time.Now().After(deadline) {
			b.Fatalf("no request through the remotedialer processes: %v", err)
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
		getRd,
	}
	for _, p := range paths[1:] {
		for range 50 {
			if err := p(); err != nil {
				b.Fatal(err)
			}
		}
	}
	// The three take turns, in an order that rotates every iteration, so
	// kas and remotedialer carry the same number of GETs. Each proxy's
	// processes' CPU time over the loop, divided by the GETs through them,
	// is their CPU per proxied GET (the other paths' GETs do not touch
	// them; their idle work in the loop's seconds is included).
	lats := make([]latencies, len(paths))
	cpuBefore, cpuErr := childCPU("kas", "agentk")
	rdServerBefore, rdErr1 := pidCPU(rdServer.pid())
	rdAgentBefore, rdErr2 := pidCPU(rdAgent.pid())
	rdErr := errors.Join(rdErr1, rdErr2)
	// Context switches of the four processes over the loop: a thread
	// that blocks (a system call that waits, a futex) or is woken costs
	// one, so they count the hand-offs each process makes per GET.
	pids, pidErr := childPIDs("kas", "agentk")
	if pidErr == nil {
		pids["rd-server"], pids["rd-agent"] = rdServer.pid(), rdAgent.pid()
	}
	switchesBefore, swErr := switchesOf(pids, pidErr)
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
	var kasAgentk time.Duration
	if cpuErr == nil {
		var cpuAfter map[string]time.Duration
		if cpuAfter, cpuErr = childCPU("kas", "agentk"); cpuErr == nil {
			n := float64(gets)
			kas := cpuAfter["kas"] - cpuBefore["kas"]
			agentk := cpuAfter["agentk"] - cpuBefore["agentk"]
			b.ReportMetric(float64(kas)/1e3/n, "kas-cpu-us/get")
			b.ReportMetric(float64(agentk)/1e3/n, "agentk-cpu-us/get")
			b.ReportMetric(float64(kas+agentk)/1e3/n, "procs-cpu-us/get")
			kasAgentk = kas + agentk
		}
	}
	if cpuErr != nil {
		b.Logf("no CPU per GET of the kas and agentk processes: %v", cpuErr)
	}
	if rdErr == nil {
		rdServerAfter, err1 := pidCPU(rdServer.pid())
		rdAgentAfter, err2 := pidCPU(rdAgent.pid())
		if rdErr = errors.Join(err1, err2); rdErr == nil {
			n := float64(gets)
			server := rdServerAfter - rdServerBefore
			agent := rdAgentAfter - rdAgentBefore
			b.ReportMetric(float64(server)/1e3/n, "rd-server-cpu-us/get")
			b.ReportMetric(float64(agent)/1e3/n, "rd-agent-cpu-us/get")
			b.ReportMetric(float64(server+agent)/1e3/n, "rd-procs-cpu-us/get")
			if cpuErr == nil && server+agent > 0 {
				b.ReportMetric(float64(kasAgentk)/float64(server+agent), "procs/rd-procs-cpu")
			}
		}
	}
	if rdErr != nil {
		b.Logf("no CPU per GET of the remotedialer processes: %v", rdErr)
	}
	if switchesAfter, err := switchesOf(pids, swErr); err == nil {
		n := float64(gets)
		for _, name := range []string{"kas", "agentk", "rd-server", "rd-agent"} {
			b.ReportMetric(float64(switchesAfter[name]-switchesBefore[name])/n, name+"-cs/get")
		}
	} else {
		b.Logf("no context switches per GET: %v", err)
	}
	d := lats[0].percentile(50)
	b.ReportMetric(float64(d)/1e3, "direct-p50-us")
	b.ReportMetric(float64(lats[1].percentile(50))/1e3, "via-kas-p50-us")
	b.ReportMetric(float64(lats[1].percentile(50)-d)/1e3, "added-p50-us")
	b.ReportMetric(float64(lats[1].percentile(99)-lats[0].percentile(99))/1e3, "added-p99-us")
	b.ReportMetric(float64(lats[2].percentile(50))/1e3, "via-rd-p50-us")
	b.ReportMetric(float64(lats[2].percentile(50)-d)/1e3, "rd-added-p50-us")
}

// bearerTransport sends a token, as client-go's transport does, over the
// plain HTTP front door client-go would not send it over.
type bearerTransport struct {
	token string
	rt    http.RoundTripper
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.rt.RoundTrip(r)
}

func (t *bearerTransport) CloseIdleConnections() {
	if c, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

// switchesOf reads pidSwitches for every process in pids; err (from
// finding them) passes through.
func switchesOf(pids map[string]int, err error) (map[string]int64, error) {
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(pids))
	for name, pid := range pids {
		n, err := pidSwitches(pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = n
	}
	return out, nil
}
