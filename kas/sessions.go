package kas

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

	"github.com/hashicorp/yamux"
	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/internal/kubehttp"
	"kubetunnel/internal/streamhttp"
	"kubetunnel/kasproxy"
	"kubetunnel/tunnel"
)

// The pool of idle proxy connections (tunnel streams) kept per session.
const (
	proxyMaxIdleStreams    = 100
	proxyIdleStreamTimeout = 90 * time.Second
)

// ErrAgentNotConnected is a request for an agent with no live session.
var ErrAgentNotConnected = kasproxy.ErrAgentNotConnected

// agentSession is a live tunnel session plus what kas tracks about it.
// Its life (lifecycle.go) is one state under mu, moved by events.
type agentSession struct {
	*tunnel.Session
	id  uint64
	reg *sessionRegistry
	// transport pools HTTP connections (streams) to this session, so
	// requests reuse streams instead of opening one each.
	transport *streamhttp.Transport

	mu    sync.Mutex // guards state, goneAway, proven, open and changed
	state sessionState
	// goneAway is set once agentk has said (yamux GoAway) that it takes no
	// new streams on this session: it is stopping. pick skips it.
	goneAway bool
	// proven is set once agentk opened a stream (its gRPC connection):
	// pick prefers such sessions.
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

// OpenStream opens a stream to agentk (for a proxied HTTP request).
func (s *agentSession) OpenStream(ctx context.Context) (net.Conn, error) {
	st, err := s.Session.OpenStream()
	if err != nil {
		return nil, err
	}
	s.streamOpened()
	s.reg.streamsOpened.WithLabelValues("to_agent").Inc()
	s.reg.streamsOpen.WithLabelValues("to_agent").Inc()
	return &trackedStream{Conn: st, done: func() {
		s.reg.streamsOpen.WithLabelValues("to_agent").Dec()
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

// sessionRegistry holds every live session per agent. Several agentk
// replicas of one agent may be connected at once.
type sessionRegistry struct {
	mu      sync.Mutex // guards byAgent and next
	byAgent map[string][]*agentSession
	next    uint64
	rr      atomic.Uint64
	// onAgent, when set, hears when an agent gets its first session here
	// and loses its last (the Redis registry). Called with mu held, so
	// the calls come in order; it must not block.
	onAgent func(agent string, connected bool)

	connected     prometheus.Gauge
	streamsOpened *prometheus.CounterVec
	streamsOpen   *prometheus.GaugeVec
	// streamsRefused counts agent-opened streams over the per-connection cap.
	streamsRefused prometheus.Counter
}

func newSessionRegistry(reg prometheus.Registerer) *sessionRegistry {
	r := &sessionRegistry{
		byAgent: map[string][]*agentSession{},
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kas_connected_agents",
			Help: "Live agent connections (one per connected agentk replica).",
		}),
		streamsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_tunnel_streams_opened_total",
			Help: "Tunnel streams opened, by direction (from_agent: gRPC from agentk; to_agent: proxied requests).",
		}, []string{"direction"}),
		streamsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kas_tunnel_streams_open",
			Help: "Tunnel streams currently open, by direction.",
		}, []string{"direction"}),
	}
	for _, d := range []string{"to_agent", "from_agent"} {
		r.streamsOpened.WithLabelValues(d)
		r.streamsOpen.WithLabelValues(d)
	}
	r.streamsRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kas_tunnel_streams_refused_total",
		Help: "Streams agentk opened over limits.max_agent_streams_per_connection, closed at once.",
	})
	reg.MustRegister(r.connected, r.streamsOpened, r.streamsOpen, r.streamsRefused)
	return r
}

func (r *sessionRegistry) add(ts *tunnel.Session) *agentSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	s := &agentSession{Session: ts, id: r.next, reg: r, changed: make(chan struct{}), ended: make(chan struct{})}
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
	r.connected.Inc()
	if len(r.byAgent[ts.Agent]) == 1 && r.onAgent != nil {
		r.onAgent(ts.Agent, true)
	}
	return s
}

func (r *sessionRegistry) remove(s *agentSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byAgent[s.Agent]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			r.connected.Dec()
			break
		}
	}
	s.transport.CloseIdleConnections()
	if len(list) == 0 {
		if _, ok := r.byAgent[s.Agent]; ok && r.onAgent != nil {
			r.onAgent(s.Agent, false)
		}
		delete(r.byAgent, s.Agent)
	} else {
		r.byAgent[s.Agent] = list
	}
}

// pick returns a live session of the agent, spreading callers round-robin
// over its replicas. Sessions whose agentk has opened its gRPC connection
// (proven) come first: a connection that authenticated but never speaks
// the protocol (a stolen token used to take a share of the agent's user
// traffic, a client stuck half-way) gets requests only when there is no
// other. A draining session is used only when there is no other: during a
// rotation the agent's new connection may not be up yet, and the old one
// still takes requests until it closes.
func (r *sessionRegistry) pick(agent string) (*agentSession, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byAgent[agent]
	n := len(list)
	start := int(r.rr.Add(1) % uint64(max(n, 1)))
	var unproven, fallback *agentSession
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
	return nil, ErrAgentNotConnected
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
func (r *sessionRegistry) RoundTripper(agent string) (http.RoundTripper, error) {
	s, err := r.pick(agent)
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
			refused := errors.Is(err, yamux.ErrRemoteGoAway) || errors.Is(err, yamux.ErrConnectionReset)
			if !refused || (body != nil && body.Touched()) || attempt == maxAttempts {
				return resp, err
			}
			if replay != nil {
				req.Body = io.NopCloser(bytes.NewReader(replay))
			}
			if errors.Is(err, yamux.ErrRemoteGoAway) {
				s.markGoneAway()
			}
			if s, err = r.pick(agent); err != nil {
				return nil, err
			}
		}
	}), nil
}

// errSessionLost is a request whose tunnel session ended under it.
var errSessionLost = errors.New("the agent's connection to kas was lost during the request (agentk reconnects by itself; retry)")

// RoundTrip sends a request over one of the session's pooled streams:
// as tunnel/wire head frames in protocol 2, as HTTP/1.1 in protocol 1.
// When the session itself went down, the error says so rather than only
// what the stream saw (an EOF).
func (s *agentSession) RoundTrip(r *http.Request) (*http.Response, error) {
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

// hasOther reports whether the agent has a live session here other than
// s that is not draining (its replacement after a GoAway).
func (r *sessionRegistry) hasOther(s *agentSession) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.byAgent[s.Agent] {
		if x != s && x.replaces() {
			return true
		}
	}
	return false
}

// count is the number of live sessions of an agent.
func (r *sessionRegistry) count(agent string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byAgent[agent])
}

// agents lists the agents with a live session here.
func (r *sessionRegistry) agents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.byAgent))
	for k := range r.byAgent {
		keys = append(keys, k)
	}
	return keys
}

// revoke asks every session of an agent to close, and returns how many.
func (r *sessionRegistry) revoke(agent, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.byAgent[agent] {
		s.revoke(reason)
	}
	return len(r.byAgent[agent])
}

// sessionsOf lists the live sessions of an agent.
func (r *sessionRegistry) sessionsOf(agent string) []*agentSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.byAgent[agent])
}
