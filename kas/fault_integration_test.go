package kas

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"k8s.io/client-go/rest"

	"kubetunnel/agentk"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/tunnel"
)

// Fault injection on the agentk ↔ kas link: toxiproxy (in process) sits
// between agentk and kas's agent listener and adds latency, limits
// bandwidth, resets the connection or silently drops everything. For each
// fault the user-visible promise is checked: requests in flight end with a
// clear error instead of hanging, the agent notices a dead link and
// reconnects, new requests succeed, and nothing is left open afterwards.

func init() {
	// toxiproxy logs through zerolog's global logger (some toxics ignore
	// the logger they are given).
	zerolog.SetGlobalLevel(zerolog.Disabled)
	toxics.Register("silent", new(silentToxic))
}

// silentToxic drops every byte and never passes a close on: a link that
// goes dark (a NAT entry expired, a cable pulled) with no FIN or RST.
// Toxiproxy's own "timeout" toxic forwards the close of the far end, so a
// peer would learn of the cut from the other side's keepalive instead of
// its own. Removing the toxic closes the connection.
type silentToxic struct{}

func (silentToxic) Pipe(stub *toxics.ToxicStub) {
	in := stub.Input
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-in:
			if c == nil {
				in = nil // the source closed: keep quiet, wait for removal
			}
		}
	}
}

func (silentToxic) Cleanup(stub *toxics.ToxicStub) {
	stub.Close()
	// After a cleanup that closes the stub, toxiproxy (v2.5.0) leaves the
	// toxic before this one writing into its input with no reader: drain
	// it until that toxic's source closes, which closing the stub brings
	// about (both directions' connections are closed).
	go func() {
		for range stub.Input {
		}
	}()
}

// faultLink is a toxiproxy proxy in front of kas's agent listener.
type faultLink struct {
	t     *testing.T
	proxy *toxiproxy.Proxy
}

func newFaultLink(t *testing.T, upstream string) *faultLink {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "agent-link", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Silent links hold their connections until the toxic goes.
		p.Toxics.ResetToxics(context.Background())
		p.Stop()
	})
	return &faultLink{t: t, proxy: p}
}

func (l *faultLink) addr() string { return l.proxy.Listen }

// add puts a toxic on both directions of every connection, existing and new.
func (l *faultLink) add(typ string, attrs map[string]any) {
	l.t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		body := map[string]any{"name": typ + "_" + stream, "type": typ, "stream": stream, "attributes": attrs}
		js, _ := json.Marshal(body)
		if _, err := l.proxy.Toxics.AddToxicJson(bytes.NewReader(js)); err != nil {
			l.t.Fatalf("toxic %s: %v", typ, err)
		}
	}
}

func (l *faultLink) remove(typ string) {
	l.t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		if err := l.proxy.Toxics.RemoveToxic(context.Background(), typ+"_"+stream); err != nil {
			l.t.Fatalf("remove toxic %s: %v", typ, err)
		}
	}
}

// faultBackend stands in for the cluster's API server with what the fault
// tests need: fast answers, answers that never come (a request that is in
// flight when the link fails), watches and large bodies.
type faultBackend struct {
	*httptest.Server
	release chan struct{} // closed at cleanup: ends /hang requests
}

func newFaultBackend(t *testing.T) *faultBackend {
	b := &faultBackend{release: make(chan struct{})}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+saToken {
			http.Error(w, "not agentk", http.StatusUnauthorized)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		switch {
		case r.URL.Path == "/hang":
			select {
			case <-r.Context().Done():
			case <-b.release:
			}
		case r.URL.Path == "/watch":
			w.Header().Set("Content-Type", "application/json")
			for i := 0; ; i++ {
				fmt.Fprintf(w, "{\"type\":\"ADDED\",\"n\":%d}\n", i)
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-b.release:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		case r.URL.Path == "/bytes":
			size, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.Write(bytes.Repeat([]byte("k"), size))
		default:
			fmt.Fprintf(w, `{"kind":"NamespaceList","received":%d}`, n)
		}
	}))
	t.Cleanup(func() {
		close(b.release)
		b.Close()
	})
	return b
}

// faultEnv is kas, toxiproxy in front of its agent listener, and one agentk
// connected through it to a stand-in API server.
type faultEnv struct {
	*env
	link    *faultLink
	backend *faultBackend
	agent   *runningAgent
	client  *http.Client
}

// newFaultEnv starts everything, with fastSession's keepalive unless
// session is given (both ends).
func newFaultEnv(t *testing.T, scheme string, session ...tunnel.SessionConfig) *faultEnv {
	// Registered first so it runs last, after every other cleanup has
	// stopped what the test started.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	e := newEnv(t, scheme)
	sess := fastSession
	if len(session) > 0 {
		sess = session[0]
	}
	e.startWith(func(s *Server) { s.Session = sess })
	f := &faultEnv{env: e, link: newFaultLink(t, e.cfg.Agent.Listen.Address), backend: newFaultBackend(t)}
	f.client = &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	t.Cleanup(f.client.CloseIdleConnections)
	f.agent = e.startAgent(func(o *agentk.Options) {
		o.KasAddress = strings.Replace(e.address(), e.cfg.Agent.Listen.Address, f.link.addr(), 1)
		o.REST = &rest.Config{Host: f.backend.URL, BearerToken: saToken}
		o.Session = sess
	})
	e.waitConnected(1)
	tu.Eventually(t, 10*time.Second, "agent config", func() bool { _, c := f.agent.Config(); return c != nil })
	return f
}

// get sends a request as kubectl would and returns status, body and time.
func (f *faultEnv) do(ctx context.Context, method, path string, body []byte) (int, []byte, time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, f.proxyURL()+path, rd)
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	start := time.Now()
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, nil, time.Since(start), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, unquote(b), time.Since(start), err
}

func (f *faultEnv) mustGet(path string) ([]byte, time.Duration) {
	f.t.Helper()
	code, body, d, err := f.do(context.Background(), "GET", path, nil)
	if err != nil || code != 200 {
		f.t.Fatalf("GET %s: %d %v %.200s", path, code, err, body)
	}
	return body, d
}

// handshakes is the number of agent connections kas accepted.
func (f *faultEnv) handshakes() float64 {
	return testutil.ToFloat64(f.kas.tunnel.Metrics.Handshakes.WithLabelValues("ok"))
}

// startWatch opens a watch and waits for its first event.
func (f *faultEnv) startWatch() (*bufio.Scanner, io.Closer) {
	f.t.Helper()
	req, _ := http.NewRequest("GET", f.proxyURL()+"/watch?watch=true", nil)
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	resp, err := f.client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		f.t.Fatalf("watch: %v %v", err, resp)
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() {
		f.t.Fatalf("watch: no first event: %v", sc.Err())
	}
	return sc, resp.Body
}

// inflight is a request started before a fault, and what became of it.
type inflight struct {
	done chan struct{}
	code int
	body []byte
	err  error
	took time.Duration
}

// startHanging sends a request the API server never answers, and waits
// until it is in flight through the tunnel.
func (f *faultEnv) startHanging() *inflight {
	f.t.Helper()
	before := metric(f.t, f.env, "kas_proxy_inflight")
	r := &inflight{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.code, r.body, r.took, r.err = f.do(context.Background(), "GET", "/hang", nil)
	}()
	tu.Eventually(f.t, 5*time.Second, "request in flight", func() bool {
		return metric(f.t, f.env, "kas_proxy_inflight") > before
	})
	return r
}

// wait returns once the request ended, failing the test if it hangs.
func (r *inflight) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(within):
		t.Fatalf("a request in flight when the link failed still hangs after %v", within)
	}
}

// expectRecovery checks that the agent is connected again and requests
// work, then stops the agent and checks that kas has nothing left open.
func (f *faultEnv) expectRecovery() {
	f.t.Helper()
	f.waitConnected(1)
	tu.Eventually(f.t, 15*time.Second, "requests to succeed again", func() bool {
		code, _, _, err := f.do(context.Background(), "GET", "/api/v1/namespaces", nil)
		return err == nil && code == 200
	})
	for range 10 {
		f.mustGet("/api/v1/namespaces")
	}
	f.agent.stop()
	f.waitConnected(0)
	f.client.CloseIdleConnections()
	f.expectNothingOpen()
}

// expectNothingOpen: the open stream gauges and the proxy's in-flight
// gauge are back at zero.
func (f *faultEnv) expectNothingOpen() {
	f.t.Helper()
	tu.Eventually(f.t, 10*time.Second, "open streams and proxied requests back at zero", func() bool {
		return testutil.ToFloat64(f.kas.sessions.streamsOpen.WithLabelValues("to_agent")) == 0 &&
			testutil.ToFloat64(f.kas.sessions.streamsOpen.WithLabelValues("from_agent")) == 0 &&
			metric(f.t, f.env, "kas_proxy_inflight") == 0
	})
}

// 150 ms each way: every request pays the round trip and succeeds; the
// keepalive tolerates it, so the link is never replaced. The timeout is
// 2 s rather than fastSession's 700 ms so that a CPU stall on a busy test
// machine on top of the 300 ms round trip is not taken for a dead link.
func TestFaultLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("waits through keepalive rounds on a slow link: not in -short")
	}
	f := newFaultEnv(t, "ws", tunnel.SessionConfig{KeepAliveInterval: 300 * time.Millisecond, KeepAliveTimeout: 2 * time.Second})
	_, base := f.mustGet("/api/v1/namespaces")
	sc, watch := f.startWatch()
	defer watch.Close()
	conns := f.handshakes()

	const oneWay = 150 * time.Millisecond
	f.link.add("latency", map[string]any{"latency": oneWay.Milliseconds()})
	for i := range 5 {
		_, d := f.mustGet("/api/v1/namespaces")
		if d < 2*oneWay {
			t.Errorf("request %d took %v with %v added each way: the fault is not on the path", i, d, oneWay)
		}
	}
	// A POST with a body crosses the link both ways too.
	code, body, _, err := f.do(context.Background(), "POST", "/api/v1/namespaces", make([]byte, 256<<10))
	if err != nil || code != 200 || !strings.Contains(string(body), `"received":262144`) {
		t.Errorf("POST under latency: %d %v %s", code, err, body)
	}
	for range 5 {
		if !sc.Scan() {
			t.Fatalf("the watch ended under latency: %v", sc.Err())
		}
	}
	time.Sleep(2 * time.Second) // several keepalive rounds
	if n := f.handshakes(); n != conns {
		t.Errorf("the agent reconnected under latency (%v connections, was %v)", n, conns)
	}
	f.link.remove("latency")
	_, after := f.mustGet("/api/v1/namespaces")
	t.Logf("GET: %v before, %v after the latency went away", base, after)
	watch.Close()
	f.expectRecovery()
}

// A 2 MB/s link: large responses and request bodies arrive whole, just
// slower, and the session is not replaced. A keepalive ping and its pong
// wait behind the data already in the socket buffers (MiBs on loopback),
// so the keepalive timeout must exceed the time the link needs to drain
// them: with fastSession's 700 ms, a 1 MiB response over 1 MB/s cut the
// session. Hence 1 s + 5 s here, with room for a busy test machine
// (docs/high-availability.md).
func TestFaultBandwidth(t *testing.T) {
	if testing.Short() {
		t.Skip("sends MiBs over a slowed link: not in -short")
	}
	f := newFaultEnv(t, "ws", tunnel.SessionConfig{KeepAliveInterval: time.Second, KeepAliveTimeout: 5 * time.Second})
	conns := f.handshakes()
	const rateKBs = 2048
	const size = 4 << 20
	f.link.add("bandwidth", map[string]any{"rate": rateKBs})

	body, d := f.mustGet("/bytes?n=" + strconv.Itoa(size))
	if len(body) != size {
		t.Errorf("GET returned %d bytes, want %d", len(body), size)
	}
	if min := time.Duration(size/1024*1000/rateKBs) * time.Millisecond / 2; d < min {
		t.Errorf("%d MiB at %d KB/s took %v: the fault is not on the path", size>>20, rateKBs, d)
	}
	t.Logf("%d MiB response at %d KB/s: %v", size>>20, rateKBs, d)
	code, resp, d, err := f.do(context.Background(), "POST", "/api/v1/namespaces", make([]byte, size))
	if err != nil || code != 200 || !strings.Contains(string(resp), fmt.Sprintf(`"received":%d`, size)) {
		t.Errorf("POST %d MiB under a bandwidth limit: %d %v %.200s", size>>20, code, err, resp)
	}
	t.Logf("%d MiB request body at %d KB/s: %v", size>>20, rateKBs, d)
	if n := f.handshakes(); n != conns {
		t.Errorf("the agent reconnected under a bandwidth limit (%v connections, was %v)", n, conns)
	}
	f.link.remove("bandwidth")
	f.expectRecovery()
}

// The connection is reset (RST) under a request in flight and a watch:
// both end at once with an error, the agent reconnects, and new requests
// succeed.
func TestFaultConnectionReset(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for agents to reconnect after resets: not in -short")
	}
	for _, scheme := range []string{"ws", "grpc"} {
		t.Run(scheme, func(t *testing.T) {
			f := newFaultEnv(t, scheme)
			conns := f.handshakes()
			sc, watch := f.startWatch()
			defer watch.Close()
			hung := f.startHanging()

			f.link.add("reset_peer", map[string]any{"timeout": 0})
			hung.wait(t, 5*time.Second)
			if hung.err != nil || hung.code != http.StatusBadGateway || !strings.Contains(string(hung.body), `request to agent "prod" failed: the agent's connection to kas was lost`) {
				t.Errorf("request in flight during a reset: %d %v %s, want 502 naming the agent and the lost connection", hung.code, hung.err, hung.body)
			}
			for sc.Scan() {
			}
			if sc.Err() == nil {
				t.Error("the watch ended as if complete; a cut watch must end with an error so the client re-lists")
			}
			watch.Close()
			tu.Eventually(t, 10*time.Second, "agent to log the lost connection", func() bool { return f.agent.log.Contains("Connection to kas lost") })
			// Every new connection is reset too until the fault goes.
			f.link.remove("reset_peer")
			f.expectRecovery()
			if n := f.handshakes(); n <= conns {
				t.Errorf("no new connection after the reset (%v)", n)
			}
		})
	}
}

// The link goes silent: no data, no FIN, no RST. Each end finds out from
// its own keepalive (300 ms + 700 ms here); the request in flight gets a
// 502 within seconds rather than waiting for the API server forever; once
// the network is back the agent reconnects.
func TestFaultBlackhole(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for keepalives to find a dead link: not in -short")
	}
	for _, scheme := range []string{"ws", "grpc"} {
		t.Run(scheme, func(t *testing.T) {
			f := newFaultEnv(t, scheme)
			sc, watch := f.startWatch()
			defer watch.Close()
			hung := f.startHanging()

			f.link.add("silent", nil)
			start := time.Now()
			hung.wait(t, 10*time.Second)
			if hung.err != nil || hung.code != http.StatusBadGateway || !strings.Contains(string(hung.body), `request to agent "prod" failed: the agent's connection to kas was lost`) {
				t.Errorf("request in flight on a silent link: %d %v %s, want 502 naming the agent and the lost connection", hung.code, hung.err, hung.body)
			}
			t.Logf("request in flight failed %v after the link went silent: %s", time.Since(start), hung.body)
			for sc.Scan() {
			}
			if sc.Err() == nil {
				t.Error("the watch ended as if complete; a cut watch must end with an error")
			}
			watch.Close()
			f.waitConnected(0)
			kasDetected := time.Since(start)
			// No close reaches agentk: only its own keepalive tells it.
			tu.Eventually(t, 10*time.Second, "agent to detect the dead link", func() bool { return f.agent.log.Contains("Connection to kas lost") })
			t.Logf("kas dropped the session after %v, agent detected the dead link after %v", kasDetected, time.Since(start))
			// New connections are silenced too while the fault lasts: the
			// proxy answers 503 fast instead of hanging.
			code, body, d, err := f.do(context.Background(), "GET", "/api/v1/namespaces", nil)
			if err != nil || code != http.StatusServiceUnavailable || d > 2*time.Second {
				t.Errorf("request while the agent is cut off: %d %v after %v: %s, want a fast 503", code, err, d, body)
			}
			f.link.remove("silent")
			f.expectRecovery()
		})
	}
}
