package kas

import (
	"errors"
	"net"
	"testing"

	"github.com/hashicorp/yamux"
	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/tunnel"
)

// newTestSession is a registered session over an in-memory yamux pair.
func newTestSession(t *testing.T, r *sessionRegistry, agent string) *agentSession {
	t.Helper()
	a, b := net.Pipe()
	server, err := yamux.Server(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	client, err := yamux.Client(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	s := r.add(&tunnel.Session{Agent: agent, Session: server})
	t.Cleanup(func() { r.remove(s) })
	return s
}

// The states a session moves through decide which requests pick it: an
// active proven session first, an unproven one next, a draining one only
// when there is nothing else, a closing one or one whose agentk said
// GoAway never.
func TestSessionStatesAndPick(t *testing.T) {
	r := newSessionRegistry(prometheus.NewRegistry())
	s1 := newTestSession(t, r, "a")
	if got := s1.pickRank(); got != 2 {
		t.Fatalf("new session: rank %d, want 2 (active, unproven)", got)
	}
	s1.markProven()
	if got, err := r.pick("a"); got != s1 || err != nil {
		t.Fatalf("pick = %v %v, want the proven session", got, err)
	}

	changed := s1.watch()
	s1.startDraining()
	select {
	case <-changed:
	default:
		t.Fatal("draining did not wake the session's watchers")
	}
	if !s1.leaving() || s1.pickRank() != 3 {
		t.Fatalf("draining: leaving %v rank %d, want true 3", s1.leaving(), s1.pickRank())
	}
	if got, _ := r.pick("a"); got != s1 {
		t.Fatal("a draining session is not the fallback when it is the only one")
	}
	if r.hasOther(s1) {
		t.Fatal("hasOther with no other session")
	}

	changed = s1.watch()
	s2 := newTestSession(t, r, "a")
	select {
	case <-changed:
	default:
		t.Fatal("the agent's new session did not wake the draining one")
	}
	if got, _ := r.pick("a"); got != s2 {
		t.Fatal("pick chose the draining session over an active one")
	}
	if !r.hasOther(s1) {
		t.Fatal("the agent's new session does not take over")
	}
	s2.markGoneAway()
	if r.hasOther(s1) || s2.pickRank() != 0 {
		t.Fatal("a session whose agentk said GoAway takes over")
	}

	changed = s1.watch()
	s1.streamOpened()
	s1.streamClosed()
	select {
	case <-changed:
	default:
		t.Fatal("a closed stream did not wake the session's watchers")
	}
	s1.startClosing()
	if _, err := r.pick("a"); !errors.Is(err, ErrAgentNotConnected) {
		t.Fatalf("pick with a closing and a gone-away session: %v, want ErrAgentNotConnected", err)
	}

	// The first end event wins.
	s1.requestRotation("first")
	s1.revoke("second")
	<-s1.ended
	if s1.ending.revoke || s1.ending.reason != "first" {
		t.Errorf("ending = %+v, want the rotation", s1.ending)
	}
}

func TestDrainConfigDefaults(t *testing.T) {
	d := DrainConfig{CloseGrace: 7}.withDefaults()
	if d.CloseGrace != 7 || d.HandoverWait != DefaultHandoverWait || d.IdleSweepPeriod != DefaultIdleSweepPeriod ||
		d.HandoverCheckPeriod != DefaultHandoverCheckPeriod || d.GoAwayTimeout != DefaultGoAwayTimeout || d.PeerLookupTimeout != DefaultPeerLookupTimeout {
		t.Errorf("withDefaults = %+v", d)
	}
}

// BenchmarkSessionPick is the cost of choosing a session per proxied
// request, with three replicas of one agent connected.
func BenchmarkSessionPick(b *testing.B) {
	r := newSessionRegistry(prometheus.NewRegistry())
	for range 3 {
		a, c := net.Pipe()
		server, _ := yamux.Server(a, nil)
		client, _ := yamux.Client(c, nil)
		defer client.Close()
		defer server.Close()
		r.add(&tunnel.Session{Agent: "a", Session: server})
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.pick("a"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
