package sessions

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"kubetunnel/internal/streamhttp"
	"kubetunnel/tunnel"
)

// sessionState is where a session is in its life; it only moves forward.
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

// Session is a live tunnel session plus what kas tracks about it. Its
// life is one state under mu, moved by the methods below and by Serve.
type Session struct {
	*tunnel.Session
	id uint64
	m  *Metrics
	// transport pools HTTP connections (streams) to this session, so
	// requests reuse streams instead of opening one each.
	transport *streamhttp.Transport

	mu    sync.Mutex // guards state, goneAway, proven, open and changed
	state sessionState
	// goneAway is set once agentk has said (yamux GoAway) that it takes no
	// new streams on this session: it is stopping. Pick skips it.
	goneAway bool
	// proven is set once agentk opened a stream (its gRPC connection):
	// Pick prefers such sessions.
	proven bool
	// open counts streams kas opened to the agent that are still open, so
	// a draining session can close once they are done.
	open int
	// changed is closed (and replaced) at every change of state or open.
	changed chan struct{}

	// ended is closed by the first end event (a revoked token, a config
	// reload); ending is that event, set before ended is closed.
	ended   chan struct{}
	ending  endEvent
	endOnce sync.Once
}

// ID tells the sessions of one kas apart in its log.
func (s *Session) ID() uint64 { return s.id }

// OpenStream opens a stream to agentk (for a proxied HTTP request).
func (s *Session) OpenStream(ctx context.Context) (net.Conn, error) {
	st, err := s.Session.OpenStreamContext(ctx)
	if err != nil {
		return nil, err
	}
	s.streamOpened()
	s.m.StreamsOpened.WithLabelValues(toAgent).Inc()
	s.m.StreamsOpen.WithLabelValues(toAgent).Inc()
	return &trackedStream{Conn: st, done: func() {
		s.m.StreamsOpen.WithLabelValues(toAgent).Dec()
		s.streamClosed()
	}}, nil
}

// trackedStream runs done once, on the first Close.
type trackedStream struct {
	net.Conn
	once sync.Once
	done func()
}

func (t *trackedStream) Close() error {
	err := t.Conn.Close()
	t.once.Do(t.done)
	return err
}

// errSessionLost is a request whose tunnel session ended under it.
var errSessionLost = errors.New("the agent's connection to kas was lost during the request (agentk reconnects by itself; retry)")

// RoundTrip sends a request over one of the session's pooled streams:
// as tunnel/wire head frames in protocol 2, as HTTP/1.1 in protocol 1.
// When the session itself went down, the error says so rather than only
// what the stream saw (an EOF).
func (s *Session) RoundTrip(r *http.Request) (*http.Response, error) {
	roundTrip := s.transport.RoundTrip
	if s.Protocol >= 2 {
		roundTrip = s.transport.RoundTripWire
	}
	resp, err := roundTrip(r)
	if err != nil && s.IsClosed() && r.Context().Err() == nil {
		err = fmt.Errorf("%w: %w", errSessionLost, err)
	}
	return resp, err
}

// changedLocked wakes whoever waits for the session to change (the
// drain), and arms the next wake-up.
func (s *Session) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// watch returns a channel closed at the session's next change of state or
// of open streams.
func (s *Session) watch() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// markProven records that agentk opened a stream (its gRPC connection).
func (s *Session) markProven() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proven = true
}

// markGoneAway records agentk's yamux GoAway: it takes no new streams.
func (s *Session) markGoneAway() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.goneAway = true
}

// streamOpened and streamClosed count the streams kas opened to agentk.
func (s *Session) streamOpened() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open++
}

func (s *Session) streamClosed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	s.changedLocked()
}

// peerArrived wakes the session's watchers: its agent has a new session
// here (a draining session's hand-over).
func (s *Session) peerArrived() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changedLocked()
}

// openStreams is the number of streams kas opened that are still open.
func (s *Session) openStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// pickRank says how Pick may use the session: 0 not at all, 1 first
// (active and proven), 2 when no proven one is active, 3 only when the
// agent has no active session (draining).
func (s *Session) pickRank() int {
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
func (s *Session) replaces() bool {
	if s.IsClosed() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateActive && !s.goneAway
}

// Leaving reports whether the session is on its way out, for the status
// page: kas drains or closes it, or agentk stops.
func (s *Session) Leaving() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state != stateActive || s.goneAway
}

// startDraining moves an active session to draining.
func (s *Session) startDraining() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateActive {
		s.state = stateDraining
		s.changedLocked()
	}
}

// startClosing moves the session to closing: no request picks it again.
func (s *Session) startClosing() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateClosing {
		s.state = stateClosing
		s.changedLocked()
	}
}

// end asks Serve to end the session's active life; the first event wins.
func (s *Session) end(ev endEvent) {
	s.endOnce.Do(func() {
		s.ending = ev
		close(s.ended)
	})
}

// Revoke asks Serve to close the session without a hand-over wait (kas no
// longer accepts the token it authenticated with); reason is logged.
func (s *Session) Revoke(reason string) { s.end(endEvent{revoke: true, reason: reason}) }

// RequestRotation asks Serve to drain the session so that agentk
// reconnects, as at max_connection_age; reason is logged.
func (s *Session) RequestRotation(reason string) { s.end(endEvent{reason: reason}) }
