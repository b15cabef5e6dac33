package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/client-go/rest"

	"kubetunnel/agentk"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/kas"
	"kubetunnel/tunnel"
)

// Fault injection on the agentk ↔ kas link: a fault proxy (faultLink)
// sits between agentk and kas's agent listener and adds latency, limits
// bandwidth, resets the connection or silently drops everything. For each
// fault the user-visible promise is checked: requests in flight end with a
// clear error instead of hanging, the agent notices a dead link and
// reconnects, new requests succeed, and nothing is left open afterwards.

// faultLink is a TCP proxy in front of kas's agent listener that applies
// faults, named after toxiproxy's toxics, to both directions of every
// connection, existing and new:
//   - "latency" {"latency": ms}: each chunk is delivered ms after it was
//     read (pipelined, as on a long link: throughput is kept);
//   - "bandwidth" {"rate": KB/s}: chunks are paced to the rate;
//   - "reset_peer": connections are reset (RST) at once, new ones too;
//   - "silent": every byte is dropped and no close is passed on: a link
//     that goes dark (a NAT entry expired, a cable pulled) with no FIN or
//     RST, so each end learns of it only from its own keepalive.
//     Removing it closes the connections that were silenced.
type faultLink struct {
	t        *testing.T
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup // the accept loop and every pump

	mu      sync.Mutex // guards the fields below
	latency time.Duration
	rate    int // bytes per second; 0: unlimited
	reset   bool
	silent  bool
	closed  bool
	conns   map[*linkConn]struct{}
}

// linkConn is one proxied connection: the agent's side and kas's.
type linkConn struct {
	down, up *net.TCPConn
	done     chan struct{} // closed when the connection is closed
	once     sync.Once
}

// close ends the connection; with rst, both sides get a reset.
func (c *linkConn) close(rst bool) {
	c.once.Do(func() {
		if rst {
			c.down.SetLinger(0)
			c.up.SetLinger(0)
		}
		c.down.Close()
		c.up.Close()
		close(c.done)
	})
}

func newFaultLink(t *testing.T, upstream string) *faultLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &faultLink{t: t, ln: ln, upstream: upstream, conns: map[*linkConn]struct{}{}}
	l.wg.Add(1)
	go l.serve()
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		l.closed = true
		for c := range l.conns {
			c.close(false)
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return l
}

func (l *faultLink) addr() string { return l.ln.Addr().String() }

func (l *faultLink) serve() {
	defer l.wg.Done()
	for {
		down, err := l.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.upstream)
		if err != nil {
			down.Close()
			continue
		}
		c := &linkConn{down: down.(*net.TCPConn), up: up.(*net.TCPConn), done: make(chan struct{})}
		l.mu.Lock()
		if l.closed || l.reset {
			l.mu.Unlock()
			c.close(true)
			continue
		}
		l.conns[c] = struct{}{}
		l.wg.Add(4)
		l.mu.Unlock()
		go l.pump(c, c.down, c.up)
		go l.pump(c, c.up, c.down)
	}
}

// chunk is what one read returned, and when.
type chunk struct {
	data []byte
	at   time.Time
}

// pump copies src to dst through the faults: one goroutine reads (so the
// sender is never held up by the faults, as on a real link), another
// delivers.
func (l *faultLink) pump(c *linkConn, src, dst *net.TCPConn) {
	defer l.wg.Done()
	chunks := make(chan chunk, 64)
	go func() {
		defer l.wg.Done()
		l.deliver(c, dst, chunks)
	}()
	defer close(chunks)
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 && !l.isSilent() {
			select {
			case chunks <- chunk{buf[:n], time.Now()}:
			case <-c.done:
				return
			}
		}
		if err != nil {
			if !l.isSilent() {
				// A close (or reset) of one side reaches the other once
				// what was read before it is delivered.
				select {
				case chunks <- chunk{}:
				case <-c.done:
				}
			}
			return
		}
	}
}

func (l *faultLink) deliver(c *linkConn, dst *net.TCPConn, chunks <-chan chunk) {
	for ch := range chunks {
		if ch.data == nil {
			c.close(false)
			l.forget(c)
			return
		}
		l.mu.Lock()
		latency, rate, silent := l.latency, l.rate, l.silent
		l.mu.Unlock()
		if silent {
			continue
		}
		wait := time.Until(ch.at.Add(latency))
		if rate > 0 {
			wait = max(wait, 0) + time.Duration(len(ch.data))*time.Second/time.Duration(rate)
		}
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-c.done:
				return
			}
		}
		if _, err := dst.Write(ch.data); err != nil {
			c.close(false)
			l.forget(c)
			return
		}
	}
}

func (l *faultLink) isSilent() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.silent
}

func (l *faultLink) forget(c *linkConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// closeAll closes every connection (with a reset if rst). l.mu is held.
func (l *faultLink) closeAllLocked(rst bool) {
	for c := range l.conns {
		c.close(rst)
		delete(l.conns, c)
	}
}

// add puts a fault on both directions of every connection, existing and new.
func (l *faultLink) add(typ string, attrs map[string]any) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch typ {
	case "latency":
		l.latency = time.Duration(attrs["latency"].(int64)) * time.Millisecond
	case "bandwidth":
		l.rate = attrs["rate"].(int) * 1000
	case "reset_peer":
		l.reset = true
		l.closeAllLocked(true)
	case "silent":
		l.silent = true
	default:
		l.t.Fatalf("no fault %q", typ)
	}
}

func (l *faultLink) remove(typ string) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch typ {
	case "latency":
		l.latency = 0
	case "bandwidth":
		l.rate = 0
	case "reset_peer":
		l.reset = false
	case "silent":
		l.silent = false
		l.closeAllLocked(false)
	default:
		l.t.Fatalf("no fault %q", typ)
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
			tu.ServeWatch(w, r, 50*time.Millisecond, b.release)
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

// faultEnv is kas, a fault link in front of its agent listener, and one agentk
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
	e.startWith(func(s *kas.Server) { s.Session = sess })
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
	return f.metric("kas_tunnel_handshakes_total", "result", "ok")
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
	before := metrics.Gather(f.t, f.env.kas.Metrics()).Sum("kas_proxy_inflight")
	r := &inflight{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.code, r.body, r.took, r.err = f.do(context.Background(), "GET", "/hang", nil)
	}()
	tu.Eventually(f.t, 5*time.Second, "request in flight", func() bool {
		return metrics.Gather(f.t, f.env.kas.Metrics()).Sum("kas_proxy_inflight") > before
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
	tu.EventuallyNoError(f.t, 10*time.Second, "open streams and proxied requests back at zero", func() error {
		m := metrics.Gather(f.t, f.kas.Metrics())
		to, from := m.Get("kas_tunnel_streams_open", "direction", "to_agent"), m.Get("kas_tunnel_streams_open", "direction", "from_agent")
		if inflight := m.Sum("kas_proxy_inflight"); to != 0 || from != 0 || inflight != 0 {
			return fmt.Errorf("streams open to_agent %v, from_agent %v; proxied requests in flight %v", to, from, inflight)
		}
		return nil
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
	// Several keepalive rounds (300 ms apart) pass while the watch
	// streams on: 40 more events, 50 ms apart.
	for range 40 {
		if !sc.Scan() {
			t.Fatalf("the watch ended under latency: %v", sc.Err())
		}
	}
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
