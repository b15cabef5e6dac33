package sessions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/internal/kubehttp"
	"kubetunnel/internal/streamhttp"
	"kubetunnel/kasproxy"
	"kubetunnel/tunnel"
	"kubetunnel/tunnel/mux"
)

// The pool of idle proxy connections (tunnel streams) kept per session.
const (
	proxyMaxIdleStreams    = 100
	proxyIdleStreamTimeout = 90 * time.Second
)

// Config is what the sessions need from the rest of kas.
type Config struct {
	// MaxConnectionAge rotates a session (agentk reconnects) after about
	// this long: agent.listen.max_connection_age, ±10%.
	MaxConnectionAge time.Duration
	// DrainTimeout bounds the end of a session, requests in flight
	// included: agent.listen.drain_timeout.
	DrainTimeout time.Duration
	// Drain times the steps of the end of a session; zero fields take
	// the defaults. SetDrain replaces it.
	Drain DrainConfig
	// Limits are the caps in force; nil caps nothing.
	Limits Limits
	// Peers, with several replicas, tells whether an agent is connected
	// to another one; nil for a single kas.
	Peers Peers
	// OnAgent, when set, hears when an agent gets its first session here
	// and loses its last (the Redis registry). It is called in order, with
	// the registry's lock held: it must not block.
	OnAgent func(agent string, connected bool)
	// Metrics are the sessions' metrics (NewMetrics); nil registers them
	// nowhere.
	Metrics *Metrics
}

// Limits are the caps the sessions enforce; a config reload may change
// them while sessions run.
type Limits interface {
	// MaxAgentStreamsPerConnection bounds the streams agentk may have
	// open on one session (limits.max_agent_streams_per_connection).
	MaxAgentStreamsPerConnection() int
}

// Peers is where else an agent is connected (the Redis registry of
// replicas).
type Peers interface {
	// Lookup lists the other replicas holding a session of the agent.
	Lookup(ctx context.Context, agent string) ([]string, error)
}

// Registry holds every live session per agent. Several agentk replicas
// of one agent may be connected at once.
type Registry struct {
	cfg Config
	m   *Metrics
	// drainCfg is cfg.Drain with defaults, as SetDrain last set it.
	drainCfg atomic.Pointer[DrainConfig]

	mu      sync.Mutex // guards byAgent and next
	byAgent map[string][]*Session
	next    uint64
	rr      atomic.Uint64
}

var _ kasproxy.Tunnels = (*Registry)(nil)

// New returns an empty registry.
func New(cfg Config) *Registry {
	r := &Registry{cfg: cfg, m: cfg.Metrics, byAgent: map[string][]*Session{}}
	if r.m == nil {
		r.m = NewMetrics(prometheus.NewRegistry())
	}
	r.SetDrain(cfg.Drain)
	return r
}

// Add registers a new session of ts's agent.
func (r *Registry) Add(ts *tunnel.Session) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	s := &Session{Session: ts, id: r.next, m: r.m, changed: make(chan struct{}), ended: make(chan struct{})}
	// streamhttp, not http.Transport: the request's own goroutine writes
	// it and reads the answer (no read and write goroutine per stream,
	// fewer hand-offs per request), and it adds no Accept-Encoding, so
	// the caller's passes through untouched.
	s.transport = &streamhttp.Transport{
		Dial:        s.OpenStream,
		MaxIdle:     proxyMaxIdleStreams,
		IdleTimeout: proxyIdleStreamTimeout,
	}
	// A draining session of the agent waits for this one (its hand-over).
	for _, x := range r.byAgent[ts.Agent] {
		x.peerArrived()
	}
	r.byAgent[ts.Agent] = append(r.byAgent[ts.Agent], s)
	r.m.Connected.Inc()
	if len(r.byAgent[ts.Agent]) == 1 && r.cfg.OnAgent != nil {
		r.cfg.OnAgent(ts.Agent, true)
	}
	return s
}

// Remove forgets a session that ended.
func (r *Registry) Remove(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byAgent[s.Agent]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			r.m.Connected.Dec()
			break
		}
	}
	// Close, not CloseIdleConnections: a response still being read (a
	// watch agentk ended as it stopped) hands its stream back after this,
	// and that stream must close too, not sit idle in a dead session's
	// pool with kas_tunnel_streams_open counting it.
	s.transport.Close()
	if len(list) == 0 {
		if _, ok := r.byAgent[s.Agent]; ok && r.cfg.OnAgent != nil {
			r.cfg.OnAgent(s.Agent, false)
		}
		delete(r.byAgent, s.Agent)
	} else {
		r.byAgent[s.Agent] = list
	}
}

// Pick returns a live session of the agent, spreading callers round-robin
// over its replicas. Sessions whose agentk has opened its gRPC connection
// (proven) come first: a connection that authenticated but never speaks
// the protocol (a stolen token used to take a share of the agent's user
// traffic, a client stuck half-way) gets requests only when there is no
// other. A draining session is used only when there is no other: during a
// rotation the agent's new connection may not be up yet, and the old one
// still takes requests until it closes.
func (r *Registry) Pick(agent string) (*Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byAgent[agent]
	n := len(list)
	start := int(r.rr.Add(1) % uint64(max(n, 1)))
	var unproven, fallback *Session
	for i := range n {
		s := list[(start+i)%n]
		switch s.pickRank() {
		case 1:
			return s, nil
		case 2:
			if unproven == nil {
				unproven = s
			}
		case 3:
			if fallback == nil {
				fallback = s
			}
		}
	}
	if unproven != nil {
		return unproven, nil
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, kasproxy.ErrAgentNotConnected
}

// maxAttempts bounds the sessions one request is tried on.
const maxAttempts = 3

// maxReplayBody is the largest request body (by Content-Length) kept in
// memory so that a request agentk refused can be sent again on another
// session. The stream's body writer starts reading at once, so without a
// copy a refused create or update (kubectl apply) could not be retried.
const maxReplayBody = 64 << 10

// RoundTripper implements kasproxy.Tunnels. A session whose agentk is
// stopping refuses new streams (yamux GoAway) and has closed its idle
// ones; a request that meets it has sent nothing yet and goes to another
// session of the agent (another agentk replica, or the new connection of
// this one), if there is one.
func (r *Registry) RoundTripper(agent string) (http.RoundTripper, error) {
	s, err := r.Pick(agent)
	if err != nil {
		return nil, err
	}
	return kasproxy.RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
		var body *kubehttp.GuardedBody
		var replay []byte
		if req.Body != nil && req.Body != http.NoBody {
			if req.ContentLength > 0 && req.ContentLength <= maxReplayBody {
				b, err := io.ReadAll(io.LimitReader(req.Body, req.ContentLength))
				req.Body.Close()
				if err != nil {
					return nil, fmt.Errorf("read the request body: %w", err)
				}
				replay = b
				req.Body = io.NopCloser(bytes.NewReader(replay))
			} else {
				body = &kubehttp.GuardedBody{ReadCloser: req.Body}
				req.Body = body
			}
		}
		for attempt := 1; ; attempt++ {
			resp, err := s.RoundTrip(req)
			// agentk refused the stream: it sent GoAway (we learn it when
			// opening one), or reset a stream opened just before its
			// GoAway reached us. It served nothing of the request.
			refused := errors.Is(err, mux.ErrRemoteGoAway) || errors.Is(err, mux.ErrConnectionReset)
			if !refused || (body != nil && body.Touched()) || attempt == maxAttempts {
				return resp, err
			}
			if replay != nil {
				req.Body = io.NopCloser(bytes.NewReader(replay))
			}
			if errors.Is(err, mux.ErrRemoteGoAway) {
				s.markGoneAway()
			}
			if s, err = r.Pick(agent); err != nil {
				return nil, err
			}
		}
	}), nil
}

// hasOther reports whether the agent has a live session here other than
// s that is not draining (its replacement after a GoAway).
func (r *Registry) hasOther(s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.byAgent[s.Agent] {
		if x != s && x.replaces() {
			return true
		}
	}
	return false
}

// Count is the number of live sessions of an agent.
func (r *Registry) Count(agent string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byAgent[agent])
}

// Agents lists the agents with a live session here.
func (r *Registry) Agents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.byAgent))
	for k := range r.byAgent {
		keys = append(keys, k)
	}
	return keys
}

// Revoke asks every session of an agent to close (Session.Revoke), and
// returns how many.
func (r *Registry) Revoke(agent, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.byAgent[agent] {
		s.Revoke(reason)
	}
	return len(r.byAgent[agent])
}

// SessionsOf lists the live sessions of an agent.
func (r *Registry) SessionsOf(agent string) []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.byAgent[agent])
}

// AcceptStreams hands each stream agentk opens on sess (its gRPC
// connections) to deliver, at most Limits.MaxAgentStreamsPerConnection at
// once; one over that is closed at once. Closing a delivered stream frees
// its place. These streams never join the pool that carries users'
// requests. AcceptStreams returns when the session ends.
func (r *Registry) AcceptStreams(sess *Session, deliver func(net.Conn)) {
	var open atomic.Int64
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		if r.cfg.Limits != nil && open.Load() >= int64(r.cfg.Limits.MaxAgentStreamsPerConnection()) {
			st.Close()
			r.m.StreamsRefused.Inc()
			continue
		}
		open.Add(1)
		sess.markProven()
		r.m.StreamsOpened.WithLabelValues(fromAgent).Inc()
		gauge := r.m.StreamsOpen.WithLabelValues(fromAgent)
		gauge.Inc()
		deliver(&trackedStream{Conn: st, done: func() { gauge.Dec(); open.Add(-1) }})
	}
}
