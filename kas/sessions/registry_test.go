package sessions

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	tu "kubetunnel/internal/testutil"
	"kubetunnel/tunnel"
)

// Streams agentk opens are handed on up to the per-connection cap; one
// over it is closed at once and counted, and closing a delivered stream
// frees its place. Opening one proves the session.
func TestAcceptStreamsCap(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	r := New(Config{Limits: fakeLimits(2), Metrics: m})
	s, a := newTestSession(t, r, "a", nil)
	delivered := make(chan net.Conn, 4)
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		r.AcceptStreams(s, func(c net.Conn) { delivered <- c })
	}()
	var got []net.Conn
	for range 2 {
		if _, err := a.yamux.OpenStream(); err != nil {
			t.Fatal(err)
		}
		got = append(got, <-delivered)
	}
	if s.pickRank() != 1 {
		t.Errorf("a session whose agentk opened streams: rank %d, want 1 (proven)", s.pickRank())
	}
	over, err := a.yamux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	// The refused stream is closed by kas: agentk reads its end.
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the stream over the cap: read %v, want it closed", err)
	}
	// Counted just after the close agentk saw.
	tu.Eventually(t, 10*time.Second, "kas_tunnel_streams_refused_total at 1", func() bool {
		return testutil.ToFloat64(m.StreamsRefused) == 1
	})
	if n := testutil.ToFloat64(m.StreamsOpen.WithLabelValues(fromAgent)); n != 2 {
		t.Errorf("kas_tunnel_streams_open{direction=from_agent} = %v, want 2", n)
	}
	got[0].Close()
	got[0].Close() // a second Close frees nothing more
	if _, err := a.yamux.OpenStream(); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-delivered:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a stream under the cap again was not delivered")
	}
	got[1].Close()
	tu.Eventually(t, 10*time.Second, "the open gauge back at zero", func() bool {
		return testutil.ToFloat64(m.StreamsOpen.WithLabelValues(fromAgent)) == 0
	})
	s.Close()
	<-accepting
}

// A request that meets a session whose agentk said GoAway is sent again,
// body included, on another session of the agent; the first is not picked
// again.
func TestRoundTripperRetriesAfterGoAway(t *testing.T) {
	r := New(Config{})
	var mu sync.Mutex
	var bodies []string
	echo := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.Write(b)
	})
	s1, a1 := newTestSession(t, r, "a", echo)
	s2, _ := newTestSession(t, r, "a", echo)
	s1.markProven()
	s2.markProven()
	if err := a1.yamux.GoAway(); err != nil {
		t.Fatal(err)
	}
	for range 4 { // whichever session the round-robin starts at
		rt, err := r.RoundTripper("a")
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://agent/api", bytes.NewReader([]byte("body")))
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("request with one session gone away: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "body" {
			t.Fatalf("answer %q, want the body echoed", b)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(bodies, []string{"body", "body", "body", "body"}) {
		t.Errorf("agentk saw bodies %q", bodies)
	}
	if s1.pickRank() != 0 {
		t.Error("the gone-away session is still picked")
	}
}

// OnAgent hears an agent's first session and its last, once each.
func TestOnAgent(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	r := New(Config{OnAgent: func(agent string, connected bool) {
		mu.Lock()
		defer mu.Unlock()
		if connected {
			calls = append(calls, "+"+agent)
		} else {
			calls = append(calls, "-"+agent)
		}
	}})
	s1, _ := newTestSession(t, r, "a", nil)
	s2, _ := newTestSession(t, r, "a", nil)
	if r.Count("a") != 2 || !slices.Equal(r.Agents(), []string{"a"}) || len(r.SessionsOf("a")) != 2 {
		t.Fatalf("two sessions: Count %d, Agents %v", r.Count("a"), r.Agents())
	}
	r.Remove(s1)
	r.Remove(s2)
	r.Remove(s2) // removed twice: no second call
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(calls, []string{"+a", "-a"}) {
		t.Errorf("OnAgent calls %v, want [+a -a]", calls)
	}
}

// BenchmarkSessionPick is the cost of choosing a session per proxied
// request, with three replicas of one agent connected.
func BenchmarkSessionPick(b *testing.B) {
	r := New(Config{})
	for range 3 {
		server, _ := yamuxPair(b)
		r.Add(&tunnel.Session{Agent: "a", Session: server})
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Pick("a"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
