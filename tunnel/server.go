package tunnel

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/tunnel/mux"
)

// Authenticator decides whether a hello may connect. It returns the agent's
// name, or a *RefusedError to tell the agent why not (any other error is a
// 500 with no detail).
type Authenticator func(ctx context.Context, h Hello) (agent string, err error)

// Session is one live, authenticated agent connection.
type Session struct {
	Agent        string
	AgentVersion string
	Remote       string
	Connected    time.Time
	// TokenSHA256 is the hash of the token the session authenticated
	// with, so the server can close the sessions of a token it revokes.
	TokenSHA256 [sha256.Size]byte
	// Protocol is the one kas and agentk agreed on in the handshake: 1,
	// HTTP/1.1 on kas's streams; 2, tunnel/wire head frames.
	Protocol int
	*mux.Session
}

// Server accepts agent connections over WebSocket (as an http.Handler) or
// raw TCP (ServeListener), authenticates them and hands each session to
// OnSession, which owns it until it returns.
type Server struct {
	Authenticate     Authenticator
	OnSession        func(ctx context.Context, s *Session)
	KasVersion       string
	HandshakeTimeout time.Duration
	Session          SessionConfig
	Logger           *slog.Logger
	Metrics          *ServerMetrics

	// ctx bounds sessions: the WebSocket handler's request context is not
	// theirs to share once the connection is hijacked.
	ctx context.Context
	wg  sync.WaitGroup
}

// ServerMetrics are the handshake and byte counters of a Server.
type ServerMetrics struct {
	Handshakes *prometheus.CounterVec // result
	Bytes      *prometheus.CounterVec // direction: from_agent, to_agent
}

// NewServerMetrics registers the server's metrics with reg.
func NewServerMetrics(reg prometheus.Registerer) *ServerMetrics {
	m := &ServerMetrics{
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_tunnel_handshakes_total",
			Help: "Agent connection handshakes by result (ok, unauthorized, malformed, version, error).",
		}, []string{"result"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_tunnel_bytes_total",
			Help: "Bytes on agent connections, by direction (from_agent, to_agent), yamux framing included.",
		}, []string{"direction"}),
	}
	for _, r := range []string{"ok", "unauthorized", "malformed", "version", "error"} {
		m.Handshakes.WithLabelValues(r)
	}
	reg.MustRegister(m.Handshakes, m.Bytes)
	return m
}

// Start binds the server to ctx; sessions end when ctx is done.
func (s *Server) Start(ctx context.Context) {
	s.ctx = ctx
}

// Wait blocks until every session the server started has ended.
func (s *Server) Wait() { s.wg.Wait() }

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) count(result string) {
	if s.Metrics != nil {
		s.Metrics.Handshakes.WithLabelValues(result).Inc()
	}
}

// check runs the hello through validation, version and token checks, and
// returns the agent name or the refusal to send.
func (s *Server) check(ctx context.Context, h Hello, parseErr error) (string, *RefusedError) {
	if parseErr != nil {
		s.count("malformed")
		return "", &RefusedError{Status: http.StatusBadRequest, Reason: parseErr.Error()}
	}
	if r := CheckProtocol(h, s.KasVersion); r != nil {
		s.count("version")
		return "", r
	}
	agent, err := s.Authenticate(ctx, h)
	if err != nil {
		var refused *RefusedError
		if errors.As(err, &refused) {
			if refused.Status == http.StatusUnauthorized {
				s.count("unauthorized")
			} else {
				s.count("error")
			}
			return "", refused
		}
		s.count("error")
		s.logger().Error("Agent authentication failed", "err", err)
		return "", &RefusedError{Status: http.StatusInternalServerError, Reason: "internal error while checking the agent token"}
	}
	s.count("ok")
	return agent, nil
}

// wsUpgrader accepts agentk's WebSocket. It reads through the 4 KiB
// buffer of the hijacked connection and borrows write buffers from the
// pool, so an idle agent costs kas no WebSocket buffer of its own. agentk
// sends no Origin, so the default same-origin check passes it.
var wsUpgrader = websocket.Upgrader{
	WriteBufferSize: wsWriteBufferSize,
	WriteBufferPool: wsWriteBuffers,
}

// ServeHTTP accepts a WebSocket upgrade from agentk.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Counted before the upgrade answer leaves: once the agent has it,
	// Wait must wait for this session. (Counted after it, a session the
	// agent already had could start after Wait returned.)
	s.wg.Add(1)
	defer s.wg.Done()
	h, perr := HelloFromHeader(r.Header)
	agent, refused := s.check(r.Context(), h, perr)
	if refused != nil {
		s.logger().Info("Agent connection refused", "remote", r.RemoteAddr, "status", refused.Status, "reason", refused.Reason, "hello", h)
		http.Error(w, refused.Reason, refused.Status)
		return
	}
	c, err := wsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		s.logger().Info("WebSocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	s.serveSession(newWSConn(c), agent, h, r.RemoteAddr)
}

// ServeListener accepts raw TCP (or TLS) connections from ln until ctx is
// done or ln fails.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var tempDelay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("accepting agent connections: %w", err)
		}
		tempDelay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveRaw(conn)
		}()
	}
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (s *Server) serveRaw(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(s.handshakeTimeout()))
	h, perr := ReadHello(conn)
	status := http.StatusOK
	ctx, cancel := context.WithTimeout(s.baseContext(), s.handshakeTimeout())
	agent, refused := s.check(ctx, h, perr)
	cancel()
	reason := ""
	if refused != nil {
		status, reason = refused.Status, refused.Reason
		s.logger().Info("Agent connection refused", "remote", conn.RemoteAddr().String(), "status", status, "reason", reason, "hello", h)
	}
	if err := WriteReply(conn, status, reason); err != nil || refused != nil {
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	s.serveSession(newFrameConn(conn), agent, h, conn.RemoteAddr().String())
}

func (s *Server) baseContext() context.Context {
	if s.ctx == nil {
		return context.Background()
	}
	return s.ctx
}

func (s *Server) serveSession(conn sessionConn, agent string, h Hello, remote string) {
	if s.Metrics != nil {
		conn = &countingConn{sessionConn: conn, in: s.Metrics.Bytes.WithLabelValues("from_agent"), out: s.Metrics.Bytes.WithLabelValues("to_agent")}
	}
	ys, err := mux.Server(conn, s.Session.mux(s.Logger))
	if err != nil {
		conn.Close()
		return
	}
	sess := &Session{Agent: agent, AgentVersion: h.AgentVersion, Remote: remote, Connected: time.Now(), TokenSHA256: sha256.Sum256([]byte(h.Token)), Protocol: h.Negotiate(), Session: ys}
	ctx, cancel := context.WithCancel(s.baseContext())
	defer cancel()
	// The session ends when the peer goes or the server stops, whichever
	// comes first; OnSession learns of either through ctx.
	go func() {
		select {
		case <-ys.CloseChan():
		case <-ctx.Done():
		}
		cancel()
	}()
	s.OnSession(ctx, sess)
	ys.Close()
}
