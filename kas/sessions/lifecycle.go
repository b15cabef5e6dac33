package sessions

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

// DrainConfig times the end of an agent session; zero fields take the
// defaults. Config.DrainTimeout bounds the whole drain.
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

// SetDrain replaces Config.Drain for the drains that start from now on.
func (r *Registry) SetDrain(c DrainConfig) {
	c = c.withDefaults()
	r.drainCfg.Store(&c)
}

// Serve runs a session's active life and its end: it waits for an end
// event (Revoke, RequestRotation), max_connection_age (a rotation) or ctx
// (kas stopping), then drains the session or, revoked, closes it. It
// returns when the session is closed or may be; the caller closes it.
func (r *Registry) Serve(ctx context.Context, sess *Session, log *slog.Logger) {
	switch ev, stopping, gone := r.awaitEnd(ctx, sess); {
	case gone:
	case ev.revoke:
		r.closeRevoked(sess, log, ev.reason)
	case stopping:
		log.Info("Draining agent connection: kas is stopping")
		r.drain(sess, log, true)
	default:
		log.Info("Rotating agent connection", "reason", ev.reason)
		r.drain(sess, log, false)
	}
}

// awaitEnd waits for what ends the session's active life: an event (end),
// max_connection_age (a rotation) or ctx (kas stopping: stopping is true);
// it returns at once when agentk is gone.
func (r *Registry) awaitEnd(ctx context.Context, sess *Session) (ev endEvent, stopping, gone bool) {
	age := r.cfg.MaxConnectionAge
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
func (r *Registry) drain(sess *Session, log *slog.Logger, stopping bool) {
	dc := *r.drainCfg.Load()
	sess.startDraining()
	if err := sendGoAway(sess, dc.GoAwayTimeout); err != nil {
		log.Debug("GoAway signal not delivered", "err", err)
	}
	_ = sess.GoAway()
	timeout := time.NewTimer(r.cfg.DrainTimeout)
	defer timeout.Stop()
	handover := time.NewTimer(dc.HandoverWait)
	defer handover.Stop()
	check := time.NewTicker(dc.HandoverCheckPeriod)
	defer check.Stop()
	sweep := time.NewTicker(dc.IdleSweepPeriod)
	defer sweep.Stop()
	// Draining: until no request is in flight and the agent is connected
	// anew (or handover_wait passed). Requests that arrive meanwhile
	// (Pick's fallback) count too.
	handedOver, checked := false, false
	for {
		changed := sess.watch()
		sess.transport.CloseIdleConnections()
		idle := sess.openStreams() == 0
		if idle && !checked {
			// Look at once when the session first becomes idle, then
			// every HandoverCheckPeriod.
			handedOver, checked = handedOver || r.handedOver(sess, stopping, dc), true
		}
		if idle && handedOver {
			break
		}
		select {
		case <-changed:
			// A stream closed, or the agent's new session arrived here.
			handedOver = handedOver || (idle && r.hasOther(sess))
		case <-sweep.C:
		case <-check.C:
			if idle {
				handedOver = handedOver || r.handedOver(sess, stopping, dc)
			}
		case <-handover.C:
			handedOver = true
		case <-sess.CloseChan():
			return
		case <-timeout.C:
			logDrainTimeout(log, sess)
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
			logDrainTimeout(log, sess)
			return
		}
	}
}

func logDrainTimeout(log *slog.Logger, sess *Session) {
	log.Warn("Drain timeout: closing the agent connection with requests in flight", "open_streams", sess.openStreams())
}

// handedOver reports whether a draining session's agent is connected
// again elsewhere: a new session here, or (with Redis) another replica.
func (r *Registry) handedOver(sess *Session, stopping bool, dc DrainConfig) bool {
	if r.hasOther(sess) {
		return true
	}
	if r.cfg.Peers == nil {
		// A single kas that stops has nowhere for the agent to go.
		return stopping
	}
	ctx, cancel := context.WithTimeout(context.Background(), dc.PeerLookupTimeout)
	defer cancel()
	peers, err := r.cfg.Peers.Lookup(ctx, sess.Agent)
	// Without the registry, no peer could reach the agent anyway.
	return err != nil || len(peers) > 0
}

// closeRevoked closes a session whose agent kas no longer vouches for
// (GitLab refuses its token, or a reload removed the agent or token): no
// new request picks it, agentk is told to dial anew, and the requests in
// flight get up to drain_timeout. There is no hand-over wait: a
// connection with a revoked token must not linger.
func (r *Registry) closeRevoked(sess *Session, log *slog.Logger, reason string) {
	dc := *r.drainCfg.Load()
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
	timeout := time.NewTimer(r.cfg.DrainTimeout)
	defer timeout.Stop()
	sweep := time.NewTicker(dc.IdleSweepPeriod)
	defer sweep.Stop()
	for wait := true; wait; {
		changed := sess.watch()
		sess.transport.CloseIdleConnections()
		if sess.openStreams() == 0 {
			// A request that picked the session just before closing was
			// set fails with the session; Pick no longer returns it.
			break
		}
		select {
		case <-changed:
		case <-sweep.C:
		case <-sess.CloseChan():
			wait = false
		case <-timeout.C:
			logDrainTimeout(log, sess)
			wait = false
		}
	}
	sess.Close()
	wg.Wait()
}

// sendGoAway tells agentk, over a stream of its own, to dial anew.
func sendGoAway(sess *Session, timeout time.Duration) error {
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
