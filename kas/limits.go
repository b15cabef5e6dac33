package kas

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/internal/httpserve"
	"kubetunnel/kasproxy"
	"kubetunnel/tunnel"
)

// Defaults of the limits section. The connection caps are sized so that
// 10,000 agents (and their reconnects) fit on the agent listener and all
// four listeners together stay below a 20,000 open-files limit, so one
// flooded listener cannot starve the others (/healthz included).
const (
	DefaultAgentMaxConnections               = 12_000
	DefaultAgentMaxConnectionsPerSource      = 1_000
	DefaultKubernetesAPIMaxConnections       = 4_000
	DefaultKubernetesAPIMaxConnectionsPerSrc = 1_000
	DefaultObservabilityMaxConnections       = 256
	DefaultObservabilityMaxConnectionsPerSrc = 64
	DefaultPrivateAPIMaxConnections          = 2_000
	DefaultPrivateAPIMaxConnectionsPerSource = 2_000
	DefaultIdleTimeout                       = 2 * time.Minute
	DefaultReadHeaderTimeout                 = 10 * time.Second
	DefaultObservabilityReadTimeout          = 10 * time.Second
	DefaultMaxStreamsPerUser                 = kasproxy.DefaultMaxStreamsPerUser
	DefaultAuthFailureBurst                  = kasproxy.DefaultAuthFailureBurst
	// agentk opens one stream per gRPC connection, and has one at a time
	// (a second while reconnecting).
	DefaultMaxAgentStreamsPerConnection = 16
	// An agent's replicas each hold one connection, two while rotating.
	DefaultMaxConnectionsPerAgent  = 64
	DefaultWriteTimeout            = kasproxy.DefaultWriteTimeout
	DefaultMaxBufferedBytesPerUser = kasproxy.DefaultMaxBufferedBytesPerUser
	DefaultMaxBufferedBytes        = kasproxy.DefaultMaxBufferedBytes
	// A stream kas closed is reset if agentk has not closed it within
	// this, freeing its buffered data (yamux keeps it otherwise).
	DefaultStreamCloseTimeout = 5 * time.Second
)

// LimitsSection bounds what any one party (an unauthenticated client, a
// user, an agent) can make kas hold. docs/security.md says what each
// defends against.
type LimitsSection struct {
	// Connections open at once on each listener, in total and per source
	// IP address; over either, a new connection is closed at once.
	AgentListen         ConnectionLimits `yaml:"agent_listen"`
	KubernetesAPIListen ConnectionLimits `yaml:"kubernetes_api_listen"`
	ObservabilityListen ConnectionLimits `yaml:"observability_listen"`
	PrivateAPIListen    ConnectionLimits `yaml:"private_api_listen"`
	// IdleTimeout closes a keep-alive HTTP connection with no request
	// this long, on every listener.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ReadHeaderTimeout bounds reading a request's headers, on every
	// listener.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ObservabilityReadTimeout bounds reading a whole request (the git
	// webhook's body) on the observability listener. The proxy listeners
	// stream bodies (exec, port-forward) and have no such bound.
	ObservabilityReadTimeout time.Duration `yaml:"observability_read_timeout"`
	// MaxStreamsPerUser bounds one caller's proxied requests in flight per
	// agent (within agent.kubernetes_api.max_streams_per_agent).
	MaxStreamsPerUser int `yaml:"max_streams_per_user"`
	// AuthFailureBurst is how many failed authentications one client
	// address may make per minute before further failures get 429. A
	// valid token is never refused.
	AuthFailureBurst int `yaml:"auth_failure_burst"`
	// MaxAgentStreamsPerConnection bounds the streams an agent connection
	// may have open that agentk opened (gRPC); over it a new one is closed
	// at once. Streams kas opens (proxied requests) are bounded by the
	// in-flight limits instead.
	MaxAgentStreamsPerConnection int `yaml:"max_agent_streams_per_connection"`
	// MaxConnectionsPerAgent bounds one agent's connections to this kas
	// (one per agentk replica); over it the handshake is refused with 429.
	MaxConnectionsPerAgent int `yaml:"max_connections_per_agent"`
	// WriteTimeout bounds each write of a proxied response to its caller:
	// a caller that reads nothing for this long is cut off.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxBufferedBytesPerUser and MaxBufferedBytes bound the memory held
	// by responses whose callers stopped reading (each holds up to its
	// tunnel stream's 16 MiB window), per caller and for this kas; a
	// response that would go over is ended.
	MaxBufferedBytesPerUser int64 `yaml:"max_buffered_bytes_per_user"`
	MaxBufferedBytes        int64 `yaml:"max_buffered_bytes"`
	// StreamCloseTimeout is how long a tunnel stream kas closed (its
	// caller went away) waits for agentk's close before it is reset and
	// its buffered data freed.
	StreamCloseTimeout time.Duration `yaml:"stream_close_timeout"`
	// TrustedProxies are addresses or CIDRs of proxies in front of the
	// Kubernetes API listener (an ingress): for a connection from one of
	// them, failed authentications count against the client its
	// X-Forwarded-For names.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// ConnectionLimits caps a listener's open connections.
type ConnectionLimits struct {
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
}

func (c *ConnectionLimits) defaults(total, perSource int) {
	if c.MaxConnections == 0 {
		c.MaxConnections = total
	}
	if c.MaxConnectionsPerSource == 0 {
		c.MaxConnectionsPerSource = min(perSource, c.MaxConnections)
	}
}

func (c ConnectionLimits) validate(key string, bad func(key, format string, args ...any)) {
	if c.MaxConnections < 0 {
		bad(key+".max_connections", "must be positive")
	}
	if c.MaxConnectionsPerSource < 0 {
		bad(key+".max_connections_per_source", "must be positive")
	}
	if c.MaxConnectionsPerSource > c.MaxConnections {
		bad(key+".max_connections_per_source", "%d is over max_connections (%d)", c.MaxConnectionsPerSource, c.MaxConnections)
	}
}

func (c ConnectionLimits) httpserve() httpserve.ConnLimits {
	return httpserve.ConnLimits{Max: c.MaxConnections, PerSource: c.MaxConnectionsPerSource}
}

func (l *LimitsSection) defaults() {
	l.AgentListen.defaults(DefaultAgentMaxConnections, DefaultAgentMaxConnectionsPerSource)
	l.KubernetesAPIListen.defaults(DefaultKubernetesAPIMaxConnections, DefaultKubernetesAPIMaxConnectionsPerSrc)
	l.ObservabilityListen.defaults(DefaultObservabilityMaxConnections, DefaultObservabilityMaxConnectionsPerSrc)
	l.PrivateAPIListen.defaults(DefaultPrivateAPIMaxConnections, DefaultPrivateAPIMaxConnectionsPerSource)
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if l.ObservabilityReadTimeout == 0 {
		l.ObservabilityReadTimeout = DefaultObservabilityReadTimeout
	}
	if l.MaxStreamsPerUser == 0 {
		l.MaxStreamsPerUser = DefaultMaxStreamsPerUser
	}
	if l.AuthFailureBurst == 0 {
		l.AuthFailureBurst = DefaultAuthFailureBurst
	}
	if l.MaxAgentStreamsPerConnection == 0 {
		l.MaxAgentStreamsPerConnection = DefaultMaxAgentStreamsPerConnection
	}
	if l.MaxConnectionsPerAgent == 0 {
		l.MaxConnectionsPerAgent = DefaultMaxConnectionsPerAgent
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	if l.MaxBufferedBytesPerUser == 0 {
		l.MaxBufferedBytesPerUser = DefaultMaxBufferedBytesPerUser
	}
	if l.MaxBufferedBytes == 0 {
		l.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if l.StreamCloseTimeout == 0 {
		l.StreamCloseTimeout = DefaultStreamCloseTimeout
	}
}

func (l *LimitsSection) validate(bad func(key, format string, args ...any)) {
	l.AgentListen.validate("limits.agent_listen", bad)
	l.KubernetesAPIListen.validate("limits.kubernetes_api_listen", bad)
	l.ObservabilityListen.validate("limits.observability_listen", bad)
	l.PrivateAPIListen.validate("limits.private_api_listen", bad)
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"limits.idle_timeout", l.IdleTimeout}, {"limits.read_header_timeout", l.ReadHeaderTimeout}, {"limits.observability_read_timeout", l.ObservabilityReadTimeout},
		{"limits.write_timeout", l.WriteTimeout}, {"limits.stream_close_timeout", l.StreamCloseTimeout}} {
		if d.d < 0 {
			bad(d.key, "must be positive")
		}
	}
	if l.MaxStreamsPerUser < 0 {
		bad("limits.max_streams_per_user", "must be positive")
	}
	if l.AuthFailureBurst < 0 {
		bad("limits.auth_failure_burst", "must be positive")
	}
	if l.MaxBufferedBytesPerUser < 0 {
		bad("limits.max_buffered_bytes_per_user", "must be positive")
	}
	if l.MaxBufferedBytes < 0 {
		bad("limits.max_buffered_bytes", "must be positive")
	}
	if l.MaxAgentStreamsPerConnection < 0 {
		bad("limits.max_agent_streams_per_connection", "must be positive")
	}
	if l.MaxConnectionsPerAgent < 0 {
		bad("limits.max_connections_per_agent", "must be positive")
	}
	for i, p := range l.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			bad(fmt.Sprintf("limits.trusted_proxies[%d]", i), "%q is not an IP address or CIDR", p)
		}
	}
}

// trustedProxies parses limits.trusted_proxies (validated).
func (l *LimitsSection) trustedProxies() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range l.TrustedProxies {
		if pr, err := parsePrefix(p); err == nil {
			out = append(out, pr)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// connLimits are the caps of the listener called name (see Server.Addr).
func (l *LimitsSection) connLimits(name string) ConnectionLimits {
	switch name {
	case "agent":
		return l.AgentListen
	case "kubernetes_api":
		return l.KubernetesAPIListen
	case "observability":
		return l.ObservabilityListen
	case "private_api":
		return l.PrivateAPIListen
	}
	return ConnectionLimits{}
}

// limitListener caps ln's connections as limits.<name>_listen says,
// below TLS so a refused connection costs no handshake, and counts the
// refusals in kas_listener_connections_refused_total.
func (s *Server) limitListener(name string, ln net.Listener) net.Listener {
	s.limitsOnce.Do(func() {
		s.connRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_listener_connections_refused_total",
			Help: "Connections closed at once because a listener's limits.<listener>_listen cap was reached, by listener.",
		}, []string{"listener"})
		for _, n := range []string{"agent", "kubernetes_api", "observability", "private_api"} {
			s.connRefused.WithLabelValues(n)
		}
		s.metrics.MustRegister(s.connRefused)
	})
	c := s.connRefused.WithLabelValues(name)
	return httpserve.LimitListener(ln, s.cfg.Limits.connLimits(name).httpserve(), c.Inc)
}

// httpServer is an http.Server for one of kas's listeners with the
// limits' header and idle timeouts; readTimeout bounds a whole request
// (0 for listeners that stream request bodies).
func (s *Server) httpServer(h http.Handler, readTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.Limits.ReadHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       s.cfg.Limits.IdleTimeout,
		MaxHeaderBytes:    proxyMaxHeaderBytes,
	}
}

// proxyLimits fills in a proxy config's per-caller bounds.
func (s *Server) proxyLimits(c kasproxy.Config) kasproxy.Config {
	l := s.cfg.Limits
	c.MaxStreamsPerUser = l.MaxStreamsPerUser
	c.WriteTimeout = l.WriteTimeout
	c.MaxBufferedBytesPerUser = l.MaxBufferedBytesPerUser
	c.MaxBufferedBytes = l.MaxBufferedBytes
	c.StreamWindow = int64(s.Session.MaxStreamWindow)
	return c
}

// sessionConfig is the tunnel session config: what tests set in
// Server.Session, with limits.stream_close_timeout unless they set one.
func (s *Server) sessionConfig() tunnel.SessionConfig {
	c := s.Session
	if c.StreamCloseTimeout == 0 {
		c.StreamCloseTimeout = s.cfg.Limits.StreamCloseTimeout
	}
	return c
}
