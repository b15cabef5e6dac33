package sessions

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	tu "kubetunnel/internal/testutil"
	"kubetunnel/kasproxy"
)

// The states a session moves through decide which requests pick it: an
// active proven session first, an unproven one next, a draining one only
// when there is nothing else, a closing one or one whose agentk said
// GoAway never.
func TestSessionStatesAndPick(t *testing.T) {
	r := New(Config{})
	s1, _ := newTestSession(t, r, "a", nil)
	if got := s1.pickRank(); got != 2 {
		t.Fatalf("new session: rank %d, want 2 (active, unproven)", got)
	}
	s1.markProven()
	if got, err := r.Pick("a"); got != s1 || err != nil {
		t.Fatalf("pick = %v %v, want the proven session", got, err)
	}

	changed := s1.watch()
	s1.startDraining()
	select {
	case <-changed:
	default:
		t.Fatal("draining did not wake the session's watchers")
	}
	if !s1.Leaving() || s1.pickRank() != 3 {
		t.Fatalf("draining: leaving %v rank %d, want true 3", s1.Leaving(), s1.pickRank())
	}
	if got, _ := r.Pick("a"); got != s1 {
		t.Fatal("a draining session is not the fallback when it is the only one")
	}
	if r.hasOther(s1) {
		t.Fatal("hasOther with no other session")
	}

	changed = s1.watch()
	s2, _ := newTestSession(t, r, "a", nil)
	select {
	case <-changed:
	default:
		t.Fatal("the agent's new session did not wake the draining one")
	}
	if got, _ := r.Pick("a"); got != s2 {
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
	if _, err := r.Pick("a"); !errors.Is(err, kasproxy.ErrAgentNotConnected) {
		t.Fatalf("pick with a closing and a gone-away session: %v, want kasproxy.ErrAgentNotConnected", err)
	}

	// The first end event wins.
	s1.RequestRotation("first")
	s1.Revoke("second")
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

// serve runs r.Serve on sess in the background; the channel is closed
// when it returns.
func serve(ctx context.Context, r *Registry, sess *Session, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Serve(ctx, sess, log)
	}()
	return done
}

func waitDone(t *testing.T, done <-chan struct{}, within time.Duration, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("%s: Serve still running after %v", what, within)
	}
}

// At max_connection_age a session is rotated: agentk is told to
// reconnect, and the session ends once its agent is connected anew here
// (without waiting out handover_wait) and nothing is in flight.
func TestRotationHandsOverToTheNewSession(t *testing.T) {
	log, logs := tu.NewLogger(t)
	r := New(Config{MaxConnectionAge: 50 * time.Millisecond, DrainTimeout: time.Minute,
		Drain: DrainConfig{HandoverWait: time.Minute, CloseGrace: 10 * time.Millisecond}})
	s1, a1 := newTestSession(t, r, "a", nil)
	done := serve(context.Background(), r, s1, log)
	tu.Eventually(t, 10*time.Second, "the GoAway request", func() bool { return a1.goAways.Load() == 1 })
	if !s1.Leaving() || s1.pickRank() != 3 {
		t.Fatalf("rotating session: leaving %v rank %d, want draining", s1.Leaving(), s1.pickRank())
	}
	if got, _ := r.Pick("a"); got != s1 {
		t.Fatal("the draining session does not serve while it is the agent's only one")
	}
	newTestSession(t, r, "a", nil)
	// handover_wait is a minute: only the new session ends the drain.
	waitDone(t, done, 10*time.Second, "after the agent's new session arrived")
	if !logs.Contains(`msg="Rotating agent connection" reason=max_connection_age`) {
		t.Errorf("log does not say why the connection was rotated:\n%s", logs)
	}
}

// A draining session with nothing in flight waits for the agent's new
// connection up to handover_wait, and no longer.
func TestRotationWaitsHandoverWait(t *testing.T) {
	log, _ := tu.NewLogger(t)
	const wait = 300 * time.Millisecond
	r := New(Config{MaxConnectionAge: time.Hour, DrainTimeout: time.Minute,
		Drain: DrainConfig{HandoverWait: wait, HandoverCheckPeriod: 20 * time.Millisecond}})
	s, _ := newTestSession(t, r, "a", nil)
	done := serve(context.Background(), r, s, log)
	start := time.Now()
	s.RequestRotation("a config reload changed the agent's projects")
	waitDone(t, done, 10*time.Second, "handover_wait over")
	if took := time.Since(start); took < wait {
		t.Errorf("the drain ended after %v, before handover_wait (%v)", took, wait)
	}
}

// With several replicas, a draining session ends as soon as Redis lists
// the agent at another replica.
func TestRotationHandsOverToAPeer(t *testing.T) {
	log, _ := tu.NewLogger(t)
	peers := &fakePeers{replicas: []string{"https://10.0.0.2:8155"}}
	r := New(Config{MaxConnectionAge: time.Hour, DrainTimeout: time.Minute, Peers: peers,
		Drain: DrainConfig{HandoverWait: time.Minute}})
	s, _ := newTestSession(t, r, "a", nil)
	done := serve(context.Background(), r, s, log)
	s.RequestRotation("test")
	waitDone(t, done, 10*time.Second, "the agent at a peer")
	if peers.lookups.Load() == 0 {
		t.Error("the drain did not look for the agent at the peers")
	}
}

// A revoked session closes at once, with no hand-over wait, and says why.
func TestRevokeClosesWithoutHandover(t *testing.T) {
	log, logs := tu.NewLogger(t)
	r := New(Config{MaxConnectionAge: time.Hour, DrainTimeout: time.Minute, Drain: DrainConfig{HandoverWait: time.Minute}})
	s, _ := newTestSession(t, r, "a", nil)
	done := serve(context.Background(), r, s, log)
	if n := r.Revoke("a", "GitLab no longer accepts a token of this agent"); n != 1 {
		t.Fatalf("Revoke = %d, want 1", n)
	}
	waitDone(t, done, 10*time.Second, "revoked")
	if !s.IsClosed() {
		t.Error("the revoked session is still open")
	}
	if _, err := r.Pick("a"); !errors.Is(err, kasproxy.ErrAgentNotConnected) {
		t.Errorf("Pick after revocation: %v, want ErrAgentNotConnected", err)
	}
	if !logs.Contains(`msg="Closing agent connection" reason="GitLab no longer accepts a token of this agent"`) {
		t.Errorf("log does not say why the connection closed:\n%s", logs)
	}
}

// When kas stops, a single replica drains each session: the request in
// flight gets its answer, then the session ends (the agent has nowhere
// else to go, so there is no hand-over wait).
func TestStopDrainsRequestsInFlight(t *testing.T) {
	log, logs := tu.NewLogger(t)
	r := New(Config{MaxConnectionAge: time.Hour, DrainTimeout: time.Minute, Drain: DrainConfig{HandoverWait: time.Minute}})
	started, release := make(chan struct{}), make(chan struct{})
	s, a := newTestSession(t, r, "a", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	}))
	ctx, stop := context.WithCancel(context.Background())
	done := serve(ctx, r, s, log)
	rt, err := r.RoundTripper("a")
	if err != nil {
		t.Fatal(err)
	}
	answer := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://agent/api", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer <- string(b)
	}()
	<-started
	stop()
	tu.Eventually(t, 10*time.Second, "the GoAway request", func() bool { return a.goAways.Load() == 1 })
	select {
	case <-done:
		t.Fatal("Serve returned with a request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if got := <-answer; got != "done" {
		t.Errorf("the request in flight got %q, want its answer", got)
	}
	waitDone(t, done, 10*time.Second, "the request done")
	if !logs.Contains("Draining agent connection: kas is stopping") {
		t.Errorf("log does not say the connection drains:\n%s", logs)
	}
}

// drain_timeout bounds a drain whose request never finishes.
func TestDrainTimeout(t *testing.T) {
	log, logs := tu.NewLogger(t)
	const timeout = 300 * time.Millisecond
	r := New(Config{MaxConnectionAge: time.Hour, DrainTimeout: timeout})
	release := make(chan struct{})
	defer close(release)
	s, _ := newTestSession(t, r, "a", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	ctx, stop := context.WithCancel(context.Background())
	done := serve(ctx, r, s, log)
	stuck, err := s.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	start := time.Now()
	stop()
	waitDone(t, done, 10*time.Second, "drain_timeout over")
	if took := time.Since(start); took < timeout {
		t.Errorf("the drain ended after %v, before drain_timeout (%v)", took, timeout)
	}
	if !logs.Contains(`msg="Drain timeout: closing the agent connection with requests in flight" open_streams=1`) {
		t.Errorf("log does not name the drain timeout:\n%s", logs)
	}
}
