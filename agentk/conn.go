package agentk

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/internal/logging"
	"kubetunnel/internal/streamhttp"
	"kubetunnel/tunnel"
	"kubetunnel/tunnel/mux"
	"kubetunnel/tunnel/wire"
	"kubetunnel/version"
)

// connManager keeps one current tunnel session to kas. It dials with
// backoff, serves kas's streams on every session it has (a rotated one
// keeps serving until kas closes it) and hands gRPC the current one.
type connManager struct {
	opts    *Options
	logger  *slog.Logger
	handler http.Handler // serves streams kas opens
	// stopWatches ends the watches in flight cleanly (agentk stopping).
	stopWatches func()
	dialer      func(ctx context.Context) (*mux.Session, error)

	mu      sync.Mutex // guards current, changed and lastErr
	current *mux.Session
	changed chan struct{} // closed and replaced whenever current changes
	lastErr error

	goaway chan *mux.Session

	// failures keeps a refusal or dial error that repeats on every retry
	// to one line and a summary every few retries.
	failures logging.Repeats

	connected prometheus.Gauge
	connects  *prometheus.CounterVec
}

func newConnManager(opts *Options, logger *slog.Logger, handler http.Handler, stopWatches func(), reg prometheus.Registerer, meta *agentMeta) (*connManager, error) {
	tlsCfg, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	m := &connManager{
		opts:        opts,
		logger:      logger,
		stopWatches: stopWatches,
		changed:     make(chan struct{}),
		goaway:      make(chan *mux.Session, 1),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentk_tunnel_connected",
			Help: "1 while agentk has a live connection to kas.",
		}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentk_tunnel_connects_total",
			Help: "Connection attempts to kas by result (ok, refused, error).",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "refused", "error"} {
		m.connects.WithLabelValues(r)
	}
	reg.MustRegister(m.connected, m.connects)
	m.handler = m.withGoAway(handler)
	m.dialer = func(ctx context.Context) (*mux.Session, error) {
		token, err := opts.token()
		if err != nil {
			return nil, err
		}
		// Protocol 1 first, for kas releases that read nothing else.
		hello := tunnel.Hello{Token: token, AgentVersion: version.Version, Protocol: 1,
			Protocols: tunnel.OfferProtocols(opts.proxyProtocol())}
		if meta != nil {
			meta.fill(ctx, &hello)
		}
		d := &tunnel.Dialer{
			Address: opts.KasAddress,
			Hello:   hello,
			TLS:     tlsCfg,
			Header:  opts.header(),
			Session: opts.Session,
			Logger:  logger,
		}
		return d.Dial(ctx)
	}
	return m, nil
}

// sessionKey carries the session a request arrived on.
type sessionKey struct{}

// withGoAway answers kas's GoAway signal and passes everything else on.
// Only kas's own request is the signal: kas names the caller
// (Kas-Proxy-User, after removing any Kas-* header the caller sent) on
// every request it proxies, so a caller reaching this path through kas
// (/agents/<name>/-/tunnel/goaway) is proxied like any other path instead
// of rotating the agent's connections.
func (m *connManager) withGoAway(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == tunnel.GoAwayPath && r.Method == http.MethodPost && !isProxied(r) {
			sess, _ := r.Context().Value(sessionKey{}).(*mux.Session)
			select {
			case m.goaway <- sess:
			default:
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isProxied reports whether r is a caller's request that kas proxied,
// rather than one of kas's own.
func isProxied(r *http.Request) bool {
	_, user := r.Header[tunnel.HeaderProxyUser]
	_, group := r.Header[tunnel.HeaderProxyGroup]
	return user || group
}

// Run keeps a connection up until ctx is done.
func (m *connManager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	bo := tunnel.Backoff{Initial: m.opts.ReconnectInitial, Max: m.opts.ReconnectMax}
	wait := func() bool {
		t := time.NewTimer(bo.Next())
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		sess, err := m.dialer(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			m.setErr(err)
			var refused *tunnel.RefusedError
			if errors.As(err, &refused) {
				m.connects.WithLabelValues("refused").Inc()
				args := []any{"status", refused.Status, "reason", refused.Reason}
				if hint := dialHint(m.opts.KasAddress, err); hint != "" {
					args = append(args, "hint", hint)
				}
				m.failures.Log(m.logger, slog.LevelError, "refused "+refused.Reason, "kas refused the connection", args...)
			} else {
				m.connects.WithLabelValues("error").Inc()
				args := []any{"err", err}
				if hint := dialHint(m.opts.KasAddress, err); hint != "" {
					args = append(args, "hint", hint)
				}
				m.failures.Log(m.logger, slog.LevelWarn, "error "+err.Error(), "Cannot connect to kas", args...)
			}
			if !wait() {
				break
			}
			continue
		}
		m.connects.WithLabelValues("ok").Inc()
		if n := m.failures.Reset(); n > 0 {
			m.logger.Info("Connected to kas", "kas_address", m.opts.KasAddress, "failed_attempts", n)
		} else {
			m.logger.Info("Connected to kas", "kas_address", m.opts.KasAddress)
		}
		start := time.Now()
		m.setCurrent(sess)
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.serve(ctx, sess)
		}()
	waitLoop:
		for {
			select {
			case <-ctx.Done():
				break waitLoop
			case <-sess.CloseChan():
				bo.Connected(time.Since(start))
				m.setErr(errors.New("connection to kas lost"))
				m.logger.Warn("Connection to kas lost; reconnecting")
				wait()
				break waitLoop
			case s := <-m.goaway:
				if s != sess {
					continue // a late signal from an older session
				}
				// kas is rotating or stopping: connect anew at once; the
				// old session keeps serving until kas closes it. A move kas
				// asked for is not a failure: if the next dial finds kas
				// gone (a single kas restarting), the waits start again
				// from the shortest instead of climbing restart by restart.
				bo.Restart()
				m.logger.Info("kas asked agentk to reconnect (GoAway)")
				break waitLoop
			}
		}
	}
	m.setCurrent(nil)
	return nil
}

// serve answers the requests kas sends on the streams it opens, in
// either protocol whatever was negotiated (a stream's first byte says
// which): HTTP/1.1 (protocol 1, and kas's GoAway) or tunnel/wire head
// frames (protocol 2). It returns when the session closes, or once it has
// drained after ctx is done, after every handler.
func (m *connManager) serve(ctx context.Context, sess *mux.Session) {
	srv := &streamhttp.Server{
		Handler: m.handler,
		ConnContext: func(c context.Context, nc net.Conn) context.Context {
			return wire.StreamContext(context.WithValue(c, sessionKey{}, sess), nc)
		},
		Logger:      m.logger,
		OtherPrefix: wire.RequestMagic,
		Other: func(ctx context.Context, c net.Conn, br *bufio.Reader) bool {
			return wire.Serve(ctx, c, br, m.handler)
		},
	}
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	served := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			m.drain(sess, srv, served)
		case <-served:
		}
		stopServing()
	}()
	_ = srv.Serve(serveCtx, sess)
	close(served)
	sess.Close()
	m.clearIfCurrent(sess)
}

// drain lets the requests in flight on sess finish when agentk stops, up
// to --drain-timeout: kas is told to open no more streams here (yamux
// GoAway; it sends new requests to another session of this agent),
// watches end cleanly at once (clients re-watch), idle streams close,
// and busy ones close after their answer.
func (m *connManager) drain(sess *mux.Session, srv *streamhttp.Server, served <-chan struct{}) {
	_ = sess.GoAway()
	if m.stopWatches != nil {
		m.stopWatches()
	}
	drained := srv.Drain()
	t := time.NewTimer(m.opts.drainTimeout())
	defer t.Stop()
	select {
	case <-drained:
	case <-served:
	case <-t.C:
		m.logger.Warn("Drain timeout: closing the connection to kas with requests in flight (exec, attach, port-forward or logs -f sessions end here)",
			"drain_timeout", m.opts.drainTimeout())
	}
}

func (m *connManager) setCurrent(sess *mux.Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.current = sess
	if sess != nil {
		m.lastErr = nil
		m.connected.Set(1)
	} else {
		m.connected.Set(0)
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *connManager) clearIfCurrent(sess *mux.Session) {
	m.mu.Lock()
	cur := m.current
	m.mu.Unlock()
	if cur == sess {
		m.setCurrent(nil)
	}
}

func (m *connManager) setErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastErr = err
}

// status says whether agentk is connected, and if not, why.
func (m *connManager) status() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current != nil && !m.current.IsClosed(), m.lastErr
}

// dialStream opens a stream to kas on the current session, waiting for a
// session when there is none (gRPC calls this to connect).
func (m *connManager) dialStream(ctx context.Context, _ string) (net.Conn, error) {
	for {
		m.mu.Lock()
		cur, changed := m.current, m.changed
		m.mu.Unlock()
		if cur != nil && !cur.IsClosed() {
			st, err := cur.OpenStream()
			if err == nil {
				return st, nil
			}
			// GoAway or closing: wait for the next session.
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}
