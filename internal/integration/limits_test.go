package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kubetunnel/agentk"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/kas"
	"kubetunnel/tunnel"

	"kubetunnel/tunnel/mux"
)

// An unauthenticated client that opens many idle connections gets only
// its share of each listener: the excess is closed at once, and agents,
// callers and /healthz from other addresses are still served.
func TestConnectionFloodIsCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the listeners for seconds: not in -short")
	}
	e := newEnv(t, "ws")
	for _, l := range []*kas.ConnectionLimits{&e.cfg.Limits.AgentListen, &e.cfg.Limits.KubernetesAPIListen, &e.cfg.Limits.ObservabilityListen} {
		*l = kas.ConnectionLimits{MaxConnections: 40, MaxConnectionsPerSource: 10}
	}
	e.start()
	obs := e.kas.Addr("observability").String()
	listeners := map[string]string{"agent": e.kas.Addr("agent").String(), "kubernetes_api": e.kas.Addr("kubernetes_api").String(), "observability": obs}
	for name, addr := range listeners {
		conns := tu.DialFrom(t, "127.0.0.2", addr, 60)
		if n := tu.CountOpen(conns, 2*time.Second); n > 10 {
			t.Errorf("%s: kas keeps %d of 60 idle connections from one address, want at most 10", name, n)
		}
	}
	// A second attacker address gets its share, and the total cap holds.
	for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		tu.DialFrom(t, src, obs, 10)
	}
	// Others are still served: an agent connects, its caller is proxied,
	// /healthz answers.
	a := e.startAgent(nil)
	tu.Eventually(t, 10*time.Second, "agent config", func() bool { _, c := a.Config(); return c != nil })
	if code, body := e.call("GET", "/api/v1/pods", aliceToken, nil, nil); code != 200 {
		t.Errorf("proxied request during the flood: %d %s", code, body)
	}
	tu.Eventually(t, 5*time.Second, "the total cap on the observability listener", func() bool {
		return metrics.Gather(t, e.kas.Metrics()).Get("kas_listener_connections_refused_total", "listener", "observability") > 50
	})
	for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
		// 40 held by attackers: even a fresh address is refused now.
		if n := tu.CountOpen(tu.DialFrom(t, src, obs, 1), 300*time.Millisecond); n != 0 {
			t.Errorf("a connection over the total cap was kept")
		}
	}
}

// One agent token cannot make kas hold unbounded streams or connections:
// past limits.max_agent_streams_per_connection its streams are closed at
// once, past limits.max_connections_per_agent its handshakes are refused;
// the agent's real connection keeps serving users meanwhile.
func TestAgentStreamAndConnectionCaps(t *testing.T) {
	e, _ := startWithConfig(t, "")
	e.stop()
	e.cfg.Limits.MaxAgentStreamsPerConnection = 8
	e.cfg.Limits.MaxConnectionsPerAgent = 3
	e.start()
	e.waitConnected(1) // the real agentk reconnects
	rogue := e.dialRogue()
	streams := openStreams(t, rogue, 200)
	tu.Eventually(t, 5*time.Second, "kas to close the streams over the cap", func() bool {
		return metrics.Gather(t, e.kas.Metrics()).Sum("kas_tunnel_streams_refused_total") >= 192
	})
	if n := tu.CountOpen(streams, 500*time.Millisecond); n > 8 {
		t.Errorf("kas keeps %d of 200 agent-opened streams, want at most 8", n)
	}
	// Connections: the real agentk and the rogue one hold two; one more
	// fits, then handshakes are refused.
	e.dialRogue()
	// kas counts a connection once it has registered it, just after the
	// handshake's answer: wait for that, or the next handshake may race it.
	e.waitConnected(3)
	_, err := e.dialer().Dial(context.Background())
	var refused *tunnel.RefusedError
	if !errors.As(err, &refused) || refused.Status != http.StatusTooManyRequests || !strings.Contains(refused.Reason, "limits.max_connections_per_agent") {
		t.Errorf("fourth connection: %v, want 429 naming limits.max_connections_per_agent", err)
	}
	// An authenticated connection that never opens its gRPC stream gets
	// no user request while a working one is there: every request is
	// answered (the idle one would never answer).
	for _, st := range streams {
		st.Close()
	}
	rogue.Close()
	e.waitConnected(2)
	// The real agentk's connection is the working one once agentk has
	// opened its gRPC stream on it (kas then prefers it); after the kas
	// restart above that may take a moment longer than the rogue steps.
	tu.Eventually(t, 10*time.Second, "agentk's gRPC stream on its connection", func() bool {
		return metrics.Gather(t, e.kas.Metrics()).Get("kas_tunnel_streams_open", "direction", "from_agent") >= 1
	})
	// An answer takes milliseconds; the timeout only separates "slow on a
	// loaded machine under -race" from "sent to the idle connection".
	client := &http.Client{Timeout: 15 * time.Second}
	for range 10 {
		req, _ := http.NewRequest("GET", e.proxyURL()+"/api/v1/pods", nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("a proxied request with an idle rogue connection: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// A caller that stops reading a large response is cut off after
// limits.write_timeout, and the tunnel stream behind it, whose window
// agentk had filled, is freed within limits.stream_close_timeout rather
// than held for minutes.
func TestStalledCallerReleasesStream(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out limits.write_timeout (1 s): not in -short")
	}
	e := newEnv(t, "ws")
	e.cfg.Limits.WriteTimeout = time.Second
	e.cfg.Limits.StreamCloseTimeout = 500 * time.Millisecond
	// Production keepalives (the fast ones of other tests misfire under a
	// full link on a busy machine) and a 1 MiB window, so the stall comes
	// soon.
	session := tunnel.SessionConfig{MaxStreamWindow: 1 << 20}
	e.startWith(func(s *kas.Server) { s.Session = session })
	// The cluster's API server answers /big with an endless body.
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			io.WriteString(w, "{}")
			return
		}
		buf := make([]byte, 64<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	defer big.Close()
	a := e.startAgent(func(o *agentk.Options) { o.REST.Host = big.URL; o.Session = session })
	tu.Eventually(t, 10*time.Second, "agent config", func() bool { _, c := a.Config(); return c != nil })
	// Proxied requests are the streams kas opens to the agent.
	streams := func() float64 { return e.metric("kas_tunnel_streams_open", "direction", "to_agent") }
	base := streams()

	c := tu.DialFrom(t, "127.0.0.1", e.cfg.Agent.KubernetesAPI.Listen.Address, 1)[0]
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(c, "GET /agents/%s/big HTTP/1.1\r\nHost: kas\r\nAuthorization: Bearer %s\r\n\r\n", agentName, aliceToken)
	// The caller reads nothing; the stream is open while kas waits.
	tu.Eventually(t, 5*time.Second, "the stream of the request", func() bool { return streams() > base })
	start := time.Now()
	tu.Eventually(t, 10*time.Second, "the stream to be freed", func() bool { return streams() <= base })
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("the stream was freed after %v, want about write_timeout + stream_close_timeout", d)
	}
	// The caller was cut off; others are served.
	if n := tu.CountOpen([]net.Conn{c}, 2*time.Second); n != 0 {
		// Drain what the kernel holds, then the close must show.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the stalled caller's connection was not closed: %v", err)
		}
	}
	if code, body := e.call("GET", "/api", aliceToken, nil, nil); code != 200 {
		t.Errorf("another request after the stall: %d %s", code, body)
	}
}

// Many handshakes of one agent at once cannot pass
// limits.max_connections_per_agent together: each is counted from the
// moment it is admitted, not from when its session registers.
func TestConnectionCapHoldsUnderConcurrentHandshakes(t *testing.T) {
	e := newEnv(t, "ws")
	e.cfg.Limits.MaxConnectionsPerAgent = 3
	e.start()
	const tries = 12
	var (
		wg               sync.WaitGroup
		mu               sync.Mutex
		accepted, capped int
		open             []*mux.Session
	)
	start := make(chan struct{})
	for range tries {
		wg.Go(func() {
			<-start
			sess, err := e.dialer().Dial(context.Background())
			mu.Lock()
			defer mu.Unlock()
			var refused *tunnel.RefusedError
			switch {
			case err == nil:
				accepted++
				open = append(open, sess)
				t.Cleanup(func() { sess.Close() })
			case errors.As(err, &refused) && refused.Status == http.StatusTooManyRequests:
				capped++
			default:
				t.Errorf("handshake: %v, want success or 429", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if accepted != 3 || capped != tries-3 {
		t.Errorf("%d concurrent handshakes: %d accepted, %d refused with 429; want 3 and %d", tries, accepted, capped, tries-3)
	}
	e.waitConnected(3)
	if _, err := e.dialer().Dial(context.Background()); err == nil {
		t.Error("a fourth connection was accepted with three registered")
	}
	// The agent gets a slot back as soon as one of its connections goes.
	if len(open) > 0 {
		open[0].Close()
		e.waitConnected(2)
		sess, err := e.dialer().Dial(context.Background())
		if err != nil {
			t.Fatalf("a connection after one of three closed: %v", err)
		}
		sess.Close()
	}
}
