package kas

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"kubetunnel/internal/httpserve"
	"kubetunnel/kas/replicas"
	"kubetunnel/kas/sessions"
	"kubetunnel/kasproxy"
)

// peerSet is what a kas replica runs when several share Redis: the agent
// registry, the forwarder to peers, and the private API it serves them.
type peerSet struct {
	cfg    *Config
	client *redis.Client
	// secret signs the tokens this replica sends and checks those it gets.
	secret    *replicas.Secret
	registry  *replicas.Registry
	forwarder *replicas.Forwarder
	// private serves the private API: only agents this replica holds.
	private *kasproxy.Proxy
}

// newPeerSet connects to Redis; servePrivate completes it once the
// sessions it serves to peers exist.
func newPeerSet(cfg *Config, logger *slog.Logger, m *replicas.Metrics) (*peerSet, error) {
	secret, err := replicas.ReadSecret(cfg.PrivateAPI.AuthenticationSecretFile)
	if err != nil {
		return nil, fmt.Errorf("private_api.authentication_secret_file: %w", err)
	}
	p := &peerSet{cfg: cfg, secret: secret}
	opts, err := RedisOptions(cfg.Redis)
	if err != nil {
		return nil, err
	}
	// Every new connection may be to a Redis that restarted empty: write
	// the entries back at once instead of at the next refresh.
	opts.OnConnect = func(context.Context, *redis.Conn) error {
		p.registry.Resync()
		return nil
	}
	p.client = redis.NewClient(opts)
	p.registry = replicas.NewRegistry(replicas.RegistryConfig{
		Client:        p.client,
		KeyPrefix:     cfg.Redis.KeyPrefix,
		TTL:           cfg.Redis.AgentTTL,
		RefreshPeriod: cfg.Redis.RefreshPeriod,
		Timeout:       cfg.Redis.Timeout + cfg.Redis.DialTimeout,
		Logger:        logger,
		Metrics:       m,
	})
	peerTLS, err := peerTLSConfig(cfg.PrivateAPI)
	if err != nil {
		p.client.Close()
		return nil, err
	}
	p.forwarder = replicas.NewForwarder(replicas.ForwarderConfig{
		Registry:    p.registry,
		Secret:      secret,
		TLS:         peerTLS,
		DialTimeout: cfg.PrivateAPI.DialTimeout,
		Logger:      logger,
		Metrics:     m,
	})
	return p, nil
}

// servePrivate sets up the private API: peers reach the agents of local
// through it.
func (p *peerSet) servePrivate(cfg *Config, local kasproxy.Tunnels, logger *slog.Logger) {
	p.private = kasproxy.New(kasproxy.Config{
		Users:                   p.secret,
		Tunnels:                 local,
		Logger:                  logger.With("listener", "private_api"),
		MaxStreamsPerAgent:      cfg.Agent.KubernetesAPI.MaxStreamsPerAgent,
		MaxStreamsPerUser:       cfg.Limits.MaxStreamsPerUser,
		WriteTimeout:            cfg.Limits.WriteTimeout,
		MaxBufferedBytesPerUser: cfg.Limits.MaxBufferedBytesPerUser,
		MaxBufferedBytes:        cfg.Limits.MaxBufferedBytes,
		// Every forwarded request of a replica comes from one address: a
		// secret mismatch must keep its clear error, not turn into 429s.
		// (Guessing an HS256 key of 32 bytes is hopeless anyway.)
		AuthFailures: kasproxy.NewFailureLimiter(1_000_000, time.Minute),
	})
}

// agentConnected records in Redis that an agent got its first session
// here, or lost its last (sessions.Config.OnAgent).
func (p *peerSet) agentConnected(agent string, connected bool) {
	if connected {
		p.registry.Register(agent)
	} else {
		p.registry.Unregister(agent)
	}
}

// RedisOptions are the go-redis options of redis: (the password and TLS
// files are read now). kas check pings Redis with them.
func RedisOptions(r *RedisSection) (*redis.Options, error) {
	opts := &redis.Options{
		Addr:            r.Address,
		Username:        r.Username,
		DB:              r.DatabaseIndex,
		DialTimeout:     r.DialTimeout,
		ReadTimeout:     r.Timeout,
		WriteTimeout:    r.Timeout,
		MaxRetries:      1,
		DisableIdentity: true,
		// Redis 7.0 (Debian's) knows nothing of maintenance notifications.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("redis.password_file: %w", err)
		}
		opts.Password = strings.TrimRight(string(b), "\r\n")
	}
	if r.TLS.Enabled {
		t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLS.ServerName}
		if r.TLS.CACertificateFile != "" {
			pool, err := loadCAs(r.TLS.CACertificateFile)
			if err != nil {
				return nil, fmt.Errorf("redis.tls.ca_certificate_file: %w", err)
			}
			t.RootCAs = pool
		}
		if r.TLS.CertificateFile != "" {
			cert, err := tls.LoadX509KeyPair(r.TLS.CertificateFile, r.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("redis.tls: %w", err)
			}
			t.Certificates = []tls.Certificate{cert}
		}
		if t.ServerName == "" {
			t.ServerName, _, _ = net.SplitHostPort(r.Address)
		}
		opts.TLSConfig = t
	}
	return opts, nil
}

func peerTLSConfig(p *PrivateAPISection) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: p.ServerName}
	if p.CACertificateFile != "" {
		pool, err := loadCAs(p.CACertificateFile)
		if err != nil {
			return nil, fmt.Errorf("private_api.ca_certificate_file: %w", err)
		}
		t.RootCAs = pool
	}
	return t, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// AdvertiseURL is this replica's private API URL for its peers: from
// private_api.advertise_address, else $KAS_PRIVATE_API_ADVERTISE_ADDRESS,
// else $POD_IP, else the listen address (bound, so port 0 works).
func AdvertiseURL(p *PrivateAPISection, bound net.Addr, getenv func(string) string) (string, error) {
	_, port, _ := net.SplitHostPort(bound.String())
	addr := p.AdvertiseAddress
	if addr == "" {
		addr = getenv(EnvAdvertiseAddress)
	}
	if addr == "" {
		if ip := getenv(EnvPodIP); ip != "" {
			addr = net.JoinHostPort(ip, port)
		}
	}
	if addr == "" {
		host, _, _ := net.SplitHostPort(p.Listen.Address)
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return "", fmt.Errorf("private_api.advertise_address: the listen address %s does not tell peers how to reach this replica: set private_api.advertise_address, or $%s, or $%s (the pod IP)", p.Listen.Address, EnvAdvertiseAddress, EnvPodIP)
		}
		addr = bound.String()
	}
	host, aport, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("private_api advertise address %q is not host:port", addr)
	}
	if aport == "0" {
		addr = net.JoinHostPort(host, port)
	}
	scheme := "http"
	if p.Listen.CertificateFile != "" {
		scheme = "https"
	}
	return scheme + "://" + addr, nil
}

// replicaTunnels serves an agent from a local session when there is one,
// and through a peer otherwise.
type replicaTunnels struct {
	local *sessions.Registry
	peers *replicas.Forwarder
}

func (t replicaTunnels) RoundTripper(agent string) (http.RoundTripper, error) {
	rt, err := t.local.RoundTripper(agent)
	if !errors.Is(err, ErrAgentNotConnected) {
		return rt, err
	}
	viaPeers := t.peers.Transport(agent)
	return kasproxy.RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := viaPeers.RoundTrip(r)
		if !errors.Is(err, ErrAgentNotConnected) {
			return resp, err
		}
		// No peer took it, so nothing of the request was sent. An agent
		// leaving a stopping replica may have just connected here, after
		// the first local check and before Redis listed it here.
		if rt, lerr := t.local.RoundTripper(agent); lerr == nil {
			return rt.RoundTrip(r)
		}
		return nil, err
	}), nil
}

// servePrivateAPI serves peers until ctx is done; like the proxy, watches
// end at once and other requests get the drain timeout.
func (s *Server) servePrivateAPI(ctx context.Context, ln net.Listener) error {
	srv := s.httpServer(s.peers.private, 0)
	stop := context.AfterFunc(ctx, s.peers.private.StopWatches)
	defer stop()
	return httpserve.ServeServer(ctx, ln, srv, s.cfg.Agent.Listen.DrainTimeout)
}
