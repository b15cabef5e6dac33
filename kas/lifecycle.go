package kas

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"kubetunnel/tunnel"
)

// An agent session's life. The state only moves forward, and every
// transition is a method of agentSession taken under its mutex:
//
//	active ──drain (max_connection_age, a config reload, kas stopping)──▶ draining ──▶ closing ──▶ (closed)
//	active ──revoke (a token GitLab or a reload no longer accepts)──────────────────▶ closing ──▶ (closed)
//
// Independently, agentk may say it is stopping (yamux GoAway: goneAway),
// and it proves itself by opening its gRPC stream (proven). pick reads
// all of it under the same mutex.
type sessionState int

const (
	// stateActive sessions take requests.
	stateActive sessionState = iota
	// stateDraining: agentk was asked to reconnect; the session takes
	// requests only when its agent has no other, while those in flight
	// finish.
	stateDraining
	// stateClosing: the session is about to close and takes no request.
	stateClosing
)

// endEvent is what ends a session's active life, besides kas stopping.
type endEvent struct {
	// revoke: close without waiting for a hand-over (a token no longer
	// accepted); otherwise drain as at max_connection_age.
	revoke bool
	// reason is for the log.
	reason string
}

// DrainConfig times the end of an agent session; zero fields take the
// defaults. agent.listen.drain_timeout bounds the whole drain.
type DrainConfig struct {
	// HandoverWait bounds how long an idle draining session stays up for
	// the agent's new connection, so requests arriving meanwhile still
	// reach the agent (through this session) instead of failing.
	HandoverWait time.Duration
	// HandoverCheckPeriod is how often an idle draining session looks
	// for the agent's new connection (here, or in Redis).
	HandoverCheckPeriod time.Duration
	// CloseGrace is how long a drained session is kept from new requests
	// before it closes, so none is caught between picking it and using it.
	CloseGrace time.Duration
	// IdleSweepPeriod is how often a draining session closes the idle
	// streams of its pool: requests in flight return theirs when done,
	// and an idle pooled stream would hold the drain open.
	IdleSweepPeriod time.Duration
	// GoAwayTimeout bounds the GoAway request that tells agentk to dial
	// anew.
	GoAwayTimeout time.Duration
	// PeerLookupTimeout bounds one Redis lookup of the agent's replicas.
	PeerLookupTimeout time.Duration
}

// DrainConfig defaults.
const (
	DefaultHandoverWait        = 5 * time.Second
	DefaultHandoverCheckPeriod = 250 * time.Millisecond
	DefaultCloseGrace          = 100 * time.Millisecond
	DefaultIdleSweepPeriod     = 50 * time.Millisecond
	DefaultGoAwayTimeout       = 5 * time.Second
	DefaultPeerLookupTimeout   = time.Second
)

func (c DrainConfig) withDefaults() DrainConfig {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&c.HandoverWait, DefaultHandoverWait)
	set(&c.HandoverCheckPeriod, DefaultHandoverCheckPeriod)
	set(&c.CloseGrace, DefaultCloseGrace)
	set(&c.IdleSweepPeriod, DefaultIdleSweepPeriod)
	set(&c.GoAwayTimeout, DefaultGoAwayTimeout)
	set(&c.PeerLookupTimeout, DefaultPeerLookupTimeout)
	return c
}

// changedLocked wakes whoever waits for the session to change (the
// drain), and arms the next wake-up.
func (s *agentSession) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// watch returns a channel closed at the session's next change of state or
// of open streams.
func (s *agentSession) watch() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// markProven records that agentk opened a stream (its gRPC connection).
func (s *agentSession) markProven() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proven = true
}

// markGoneAway records agentk's yamux GoAway: it takes no new streams.
func (s *agentSession) markGoneAway() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.goneAway = true
}

// streamOpened and streamClosed count the streams kas opened to agentk.
func (s *agentSession) streamOpened() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open++
}

func (s *agentSession) streamClosed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	s.changedLocked()
}

// peerArrived wakes the session's watchers: its agent has a new session
// here (a draining session's hand-over).
func (s *agentSession) peerArrived() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changedLocked()
}

// openStreams is the number of streams kas opened that are still open.
func (s *agentSession) openStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// pickRank says how pick may use the session: 0 not at all, 1 first
// (active and proven), 2 when no proven one is active, 3 only when the
// agent has no active session (draining).
func (s *agentSession) pickRank() int {
	if s.IsClosed() {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.goneAway || s.state == stateClosing:
		return 0
	case s.state == stateActive && s.proven:
		return 1
	case s.state == stateActive:
		return 2
	}
	return 3
}

// replaces reports whether the session can take over from a draining one
// of the same agent: live, active, and agentk not stopping.
func (s *agentSession) replaces() bool {
	if s.IsClosed() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateActive && !s.goneAway
}

// leaving reports whether the session is on its way out, for the status
// page: kas drains or closes it, or agentk stops.
func (s *agentSession) leaving() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state != stateActive || s.goneAway
}

// startDraining moves an active session to draining.
func (s *agentSession) startDraining() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateActive {
		s.state = stateDraining
		s.changedLocked()
	}
}

// startClosing moves the session to closing: no request picks it again.
func (s *agentSession) startClosing() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateClosing {
		s.state = stateClosing
		s.changedLocked()
	}
}

// end asks handleSession to end the session's active life; the first
// event wins.
func (s *agentSession) end(ev endEvent) {
	s.endOnce.Do(func() {
		s.ending = ev
		close(s.ended)
	})
}

// revoke asks handleSession to close the session without a hand-over wait.
func (s *agentSession) revoke(reason string) { s.end(endEvent{revoke: true, reason: reason}) }

// requestRotation asks handleSession to drain the session so that agentk
// reconnects, as at max_connection_age.
func (s *agentSession) requestRotation(reason string) { s.end(endEvent{reason: reason}) }

// awaitEnd waits for what ends the session's active life: an event (end),
// max_connection_age (a rotation) or ctx (kas stopping: stopping is true);
// it returns at once when agentk is gone.
func (s *Server) awaitEnd(ctx context.Context, sess *agentSession) (ev endEvent, stopping, gone bool) {
	age := s.cfg.Agent.Listen.MaxConnectionAge
	// ±10% jitter so agents connected together are not rotated together.
	age += time.Duration(rand.Int64N(int64(age)/5+1)) - age/10
	timer := time.NewTimer(age)
	defer timer.Stop()
	select {
	case <-timer.C:
		return endEvent{reason: "max_connection_age"}, false, false
	case <-sess.ended:
		return sess.ending, false, false
	case <-ctx.Done():
		return endEvent{reason: "kas is stopping"}, true, sess.IsClosed()
	}
}

// drain asks the agent to reconnect, refuses new streams on this session
// and waits (bounded by drain_timeout) for the requests in flight and for
// the agent's new connection, then closes the session.
func (s *Server) drain(sess *agentSession, log *slog.Logger, stopping bool) {
	dc := s.Drain.withDefaults()
	sess.startDraining()
	if err := sendGoAway(sess, dc.GoAwayTimeout); err != nil {
		log.Debug("GoAway signal not delivered", "err", err)
	}
	_ = sess.GoAway()
	timeout := time.NewTimer(s.cfg.Agent.Listen.DrainTimeout)
	defer timeout.Stop()
	handover := time.NewTimer(dc.HandoverWait)
	defer handover.Stop()
	check := time.NewTicker(dc.HandoverCheckPeriod)
	defer check.Stop()
	sweep := time.NewTicker(dc.IdleSweepPeriod)
	defer sweep.Stop()
	// Draining: until no request is in flight and the agent is connected
	// anew (or handover_wait passed). Requests that arrive meanwhile
	// (pick's fallback) count too.
	handedOver, checked := false, false
	for {
		changed := sess.watch()
		sess.transport.CloseIdleConnections()
		idle := sess.openStreams() == 0
		if idle && !checked {
			// Look at once when the session first becomes idle, then
			// every HandoverCheckPeriod.
			handedOver, checked = handedOver || s.handedOver(sess, stopping, dc), true
		}
		if idle && handedOver {
			break
		}
		select {
		case <-changed:
			// A stream closed, or the agent's new session arrived here.
			handedOver = handedOver || (idle && s.sessions.hasOther(sess))
		case <-sweep.C:
		case <-check.C:
			if idle {
				handedOver = handedOver || s.handedOver(sess, stopping, dc)
			}
		case <-handover.C:
			handedOver = true
		case <-sess.CloseChan():
			return
		case <-timeout.C:
			log.Warn("Drain timeout: closing the agent connection with requests in flight", "open_streams", sess.openStreams())
			return
		}
	}
	// Closing: a request that picked this session just before it left
	// draining has had CloseGrace to open its stream.
	sess.startClosing()
	grace := time.NewTimer(dc.CloseGrace)
	defer grace.Stop()
	graceOver := false
	for {
		changed := sess.watch()
		sess.transport.CloseIdleConnections()
		if graceOver && sess.openStreams() == 0 {
			return
		}
		select {
		case <-changed:
		case <-sweep.C:
		case <-grace.C:
			graceOver = true
		case <-sess.CloseChan():
			return
		case <-timeout.C:
			log.Warn("Drain timeout: closing the agent connection with requests in flight", "open_streams", sess.openStreams())
			return
		}
	}
}

// handedOver reports whether a draining session's agent is connected
// again elsewhere: a new session here, or (with Redis) another replica.
func (s *Server) handedOver(sess *agentSession, stopping bool, dc DrainConfig) bool {
	if s.sessions.hasOther(sess) {
		return true
	}
	if s.peers == nil {
		// A single kas that stops has nowhere for the agent to go.
		return stopping
	}
	ctx, cancel := context.WithTimeout(context.Background(), dc.PeerLookupTimeout)
	defer cancel()
	peers, err := s.peers.registry.Lookup(ctx, sess.Agent)
	// Without the registry, no peer could reach the agent anyway.
	return err != nil || len(peers) > 0
}

// closeRevoked closes a session whose agent the registry no longer vouches
// for (GitLab refuses its token, or a reload removed the agent or token):
// no new request picks it, agentk is told to dial anew, and the requests
// in flight get up to drain_timeout. There is no hand-over wait: a
// connection with a revoked token must not linger.
func (s *Server) closeRevoked(sess *agentSession, log *slog.Logger, reason string) {
	dc := s.Drain.withDefaults()
	log.Warn("Closing agent connection", "reason", reason)
	sess.startClosing()
	var wg sync.WaitGroup
	// The hint may wait for an agentk that does not answer; closing the
	// session below ends it.
	wg.Go(func() {
		if err := sendGoAway(sess, dc.GoAwayTimeout); err != nil {
			log.Debug("GoAway signal not delivered", "err", err)
		}
	})
	_ = sess.GoAway()
	timeout := time.NewTimer(s.cfg.Agent.Listen.DrainTimeout)
	defer timeout.Stop()
	sweep := time.NewTicker(dc.IdleSweepPeriod)
	defer sweep.Stop()
	for wait := true; wait; {
		changed := sess.watch()
		sess.transport.CloseIdleConnections()
		if sess.openStreams() == 0 {
			// A request that picked the session just before closing was
			// set fails with the session; pick no longer returns it.
			break
		}
		select {
		case <-changed:
		case <-sweep.C:
		case <-sess.CloseChan():
			wait = false
		case <-timeout.C:
			log.Warn("Drain timeout: closing the agent connection with requests in flight", "open_streams", sess.openStreams())
			wait = false
		}
	}
	sess.Close()
	wg.Wait()
}

// sendGoAway tells agentk, over a stream of its own, to dial anew.
func sendGoAway(sess *agentSession, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := sess.Session.OpenStream()
	if err != nil {
		return err
	}
	defer st.Close()
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return st, nil }}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://agentk"+tunnel.GoAwayPath, nil)
	req.Header.Set(tunnel.HeaderInternal, tunnel.InternalGoAway)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("agentk answered %s", resp.Status)
	}
	return nil
}
