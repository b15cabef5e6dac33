package kas

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/httpserve"
	"kubetunnel/kas/gitops"
	"kubetunnel/kas/replicas"
	"kubetunnel/kas/repos"
	"kubetunnel/kas/sessions"
	"kubetunnel/kas/status"
	"kubetunnel/kas/tracker"
	"kubetunnel/kas/usage"
	"kubetunnel/kas/webhook"
	"kubetunnel/kasproxy"
	"kubetunnel/tunnel"
	"kubetunnel/version"
)

// Server is a configured kas, ready to Run.
type Server struct {
	cfg      *Config
	logger   *slog.Logger
	registry AgentRegistry
	// gitlab is set with gitlab: in the config.
	gitlab   *gitlab.Client
	metrics  *prometheus.Registry
	sessions *sessions.Registry
	// users are users[]: the proxy's and the status API's callers.
	users *userRegistry
	// repoSet is repositories[] plus, with gitlab:, the mirrors of GitLab
	// projects.
	repoSet *repoSet
	// reload holds what a config reload needs (reload.go).
	reload  *reloader
	tunnel  *tunnel.Server
	grpc    *grpc.Server
	grpcLn  *httpserve.ConnListener
	proxy   *kasproxy.Proxy
	gitops  *gitops.Server
	status  *status.Store
	webhook *webhook.Handler
	// peers is set when Redis is configured (several replicas).
	peers *peerSet
	// With gitlab: the agent tracker, and the api listener's server when
	// api: is set.
	tracker *tracker.Tracker
	apiGRPC *grpc.Server
	// hellos holds the latest hello (without its token) per agent key,
	// for the tracker's agent metadata.
	hellos sync.Map
	// admissions reserves the per-agent connection cap for handshakes in
	// flight.
	admissions admissions

	// Getenv reads the environment (advertise address); tests replace it.
	Getenv func(string) string

	// Session holds tunnel session settings; tests shorten keepalives.
	Session tunnel.SessionConfig
	// Drain times the end of agent sessions (kas/sessions); zero fields
	// take the defaults. Run applies it.
	Drain DrainConfig

	// ConfigFile, when set, is the config file Run watches: it is read
	// again on RequestReload (SIGHUP) and when its content changes, and
	// applied by Reload.
	ConfigFile string
	// ConfigPollPeriod is how often Run looks at ConfigFile
	// (DefaultConfigPollPeriod when 0; never when negative, leaving
	// RequestReload).
	ConfigPollPeriod time.Duration

	mu    sync.Mutex // guards addrs
	addrs map[string]net.Addr
	ready chan struct{}
	// stopping is set once Run's ctx is done: /readyz fails from then on.
	stopping atomic.Bool
	// connRefused counts connections over a listener's caps (limits.go).
	limitsOnce  sync.Once
	connRefused *prometheus.CounterVec
	// statusGitLab, with gitlab:, lets GitLab users read the status page.
	statusGitLab status.Authorizer
}

// New wires a kas from a validated config. Nothing listens until Run.
func New(cfg *Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.Git.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("git cache directory: %w", err)
	}
	rcfg := repos.Config{
		CacheDir:     cfg.Git.CacheDir,
		Repositories: cfg.Repositories,
		PollPeriod:   min(cfg.Agent.Configuration.PollPeriod, cfg.Agent.GitOps.PollPeriod),
		Logger:       logger,
		Metrics:      reg,
	}
	if g := cfg.GitLab; g != nil {
		rcfg.GitLab = &repos.GitLab{Address: g.Address, Username: g.Git.Username, PasswordFile: g.Git.PasswordFile, CAFile: g.CACertificateFile}
	}
	rs, err := repos.New(rcfg)
	if err != nil {
		return nil, err
	}
	registry, glClient, err := newRegistry(cfg, logger)
	if err != nil {
		rs.Close()
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		logger:   logger,
		registry: registry,
		gitlab:   glClient,
		metrics:  reg,
		users:    newUserRegistry(cfg),
		grpcLn:   httpserve.NewConnListener(tunnelAddr{}),
		addrs:    map[string]net.Addr{},
		ready:    make(chan struct{}),
		Getenv:   os.Getenv,
	}
	s.reload = newReloader(cfg, reg)
	s.repoSet = newRepoSet(rs)
	s.webhook, err = webhook.New(webhook.Config{SecretFile: cfg.Git.WebhookSecretFile, Repositories: rs.WebhookRepositories, Trigger: rs.Trigger, Logger: logger, Metrics: reg})
	if err != nil {
		rs.Close()
		return nil, err
	}
	s.status = status.NewStore(reg)
	s.gitops = s.newGitOps()
	replicaMetrics := replicas.NewMetrics(reg)
	scfg := sessions.Config{
		MaxConnectionAge: cfg.Agent.Listen.MaxConnectionAge,
		DrainTimeout:     cfg.Agent.Listen.DrainTimeout,
		Limits:           sessionLimits{s},
		Metrics:          sessions.NewMetrics(reg),
	}
	if cfg.Redis != nil {
		if s.peers, err = newPeerSet(cfg, logger, replicaMetrics); err != nil {
			rs.Close()
			return nil, err
		}
		scfg.Peers = s.peers.registry
		scfg.OnAgent = s.peers.agentConnected
	}
	s.sessions = sessions.New(scfg)
	var tunnels kasproxy.Tunnels = s.sessions
	if s.peers != nil {
		s.peers.servePrivate(cfg, s.sessions, logger)
		tunnels = replicaTunnels{local: s.sessions, peers: s.peers.forwarder}
	}
	if cfg.GitLab != nil {
		var rc *redis.Client
		if s.peers != nil {
			rc = s.peers.client
		}
		s.tracker = s.newTracker(rc)
		if cfg.API != nil {
			if s.apiGRPC, err = s.newAPIServer(); err != nil {
				rs.Close()
				return nil, err
			}
		}
	}
	pc := kasproxy.Config{
		Users:   s.users,
		Tunnels: tunnels,
		Logger:  logger,
		Metrics: kasproxy.NewMetrics(reg),

		MaxStreamsPerAgent: cfg.Agent.KubernetesAPI.MaxStreamsPerAgent,
		AuthFailures:       kasproxy.NewFailureLimiter(cfg.Limits.AuthFailureBurst, kasproxy.DefaultAuthFailureWindow),
		TrustedProxies:     cfg.Limits.trustedProxies(),
	}
	if cfg.GitLab != nil {
		if pc.GitLab, err = newGitLabAccess(cfg, glClient); err != nil {
			rs.Close()
			return nil, err
		}
		s.statusGitLab = pc.GitLab.Authorizer
	}
	s.proxy = kasproxy.New(s.proxyLimits(pc))
	s.grpc = grpc.NewServer(grpc.Creds(agentCreds{}), grpc.ChainStreamInterceptor(s.status.StreamInterceptor),
		// Every connected agent holds a gRPC connection for as long as it
		// is connected; gRPC's default 32 KiB read and write buffers per
		// connection were most of an idle agent's cost to kas. Agents send
		// kas small messages; what kas writes borrows a pooled buffer.
		grpc.ReadBufferSize(grpcReadBufferSize), grpc.SharedWriteBuffer(true))
	s.gitops.Register(s.grpc)
	return s, nil
}

// grpcReadBufferSize is the read buffer of each agent's gRPC connection.
const grpcReadBufferSize = 4 << 10

// Metrics is the registry kas serves on /metrics.
func (s *Server) Metrics() *prometheus.Registry { return s.metrics }

// Addr returns the bound address of a listener ("agent", "observability",
// "kubernetes_api", "private_api") once Ready is closed; useful with port 0.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[name]
}

// Ready is closed once every listener is bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// ConnectedSessions is the number of live sessions of an agent.
func (s *Server) ConnectedSessions(agent string) int { return s.sessions.Count(agent) }

// PrivateAPIURL is the URL this replica advertises to its peers in Redis
// once Ready is closed ("" without Redis).
func (s *Server) PrivateAPIURL() string {
	if s.peers == nil {
		return ""
	}
	return s.peers.registry.Self()
}

func (s *Server) listen(name string, l Listen) (net.Listener, error) {
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		return nil, fmt.Errorf("%s listener on %s: %w", name, l.Address, err)
	}
	ln = s.limitListener(name, ln)
	if l.CertificateFile != "" {
		cert, err := tls.LoadX509KeyPair(l.CertificateFile, l.KeyFile)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("%s listener TLS: %w", name, err)
		}
		// HTTP/1.1 only: the agent listener's WebSocket upgrade needs it,
		// and on the Kubernetes API listener HTTP/2 measured slower per
		// request (a goroutine per request and writes through the
		// connection's serve loop; docs/benchmarks.md, "Kubernetes API
		// proxy: direct vs through kas").
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	}
	s.mu.Lock()
	s.addrs[name] = ln.Addr()
	s.mu.Unlock()
	return ln, nil
}

// listeners are Run's bound sockets; api and priv are nil when unused.
type listeners struct {
	agent, obs, kubeAPI, api, priv net.Listener
	// self is the private API URL this replica advertises.
	self string
}

func (l *listeners) closeAll() {
	for _, ln := range []net.Listener{l.agent, l.obs, l.kubeAPI, l.api, l.priv} {
		if ln != nil {
			ln.Close()
		}
	}
}

// bind opens every listener the config asks for, or none.
func (s *Server) bind() (_ *listeners, err error) {
	l := &listeners{}
	defer func() {
		if err != nil {
			l.closeAll() // l, not the nil the failing return gives
		}
	}()
	al := s.cfg.Agent.Listen
	if l.agent, err = s.listen("agent", Listen{Address: al.Address, CertificateFile: al.CertificateFile, KeyFile: al.KeyFile}); err != nil {
		return nil, err
	}
	if l.obs, err = s.listen("observability", s.cfg.Observability.Listen); err != nil {
		return nil, err
	}
	if l.kubeAPI, err = s.listen("kubernetes_api", s.cfg.Agent.KubernetesAPI.Listen); err != nil {
		return nil, err
	}
	if s.apiGRPC != nil {
		// TLS, when set, is the gRPC server's (credentials.NewTLS).
		if l.api, err = s.listen("api", Listen{Address: s.cfg.API.Listen.Address}); err != nil {
			return nil, err
		}
	}
	if s.peers != nil {
		if l.priv, err = s.listen("private_api", s.cfg.PrivateAPI.Listen); err != nil {
			return nil, err
		}
		if l.self, err = AdvertiseURL(s.cfg.PrivateAPI, l.priv.Addr(), s.Getenv); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// stage is a part of kas that Run stops on its own, in order: it runs on
// a context detached from Run's, cancelled by stop.
type stage struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startStage runs fn on its own context; fail is called with fn's error,
// if any, so that a failing stage stops kas.
func startStage(ctx context.Context, fail func(error), fn func(context.Context) error) *stage {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	st := &stage{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(st.done)
		if st.err = fn(ctx); st.err != nil {
			fail(st.err)
		}
	}()
	return st
}

// stop cancels the stage and waits for it to return.
func (st *stage) stop() error {
	if st == nil {
		return nil
	}
	st.cancel()
	<-st.done
	return st.err
}

// Run serves until ctx is done, then stops in stages: the listeners stop
// accepting; agents are sent GoAway at once (they reconnect, to another
// replica when there are several) and their sessions drain while proxied
// requests finish, within agent.listen.drain_timeout; peers can still
// reach this replica's agents over the private API until the last session
// is gone; then the registry entries are removed and the rest stops.
//
// Stages, started in this order and stopped in reverse:
//  1. bind: every listener (nothing runs if one fails);
//  2. registry: this replica's agents in Redis (with redis:);
//  3. private API: peers reach this replica's agents (with redis:);
//  4. sessions: the agent connections (tunnel.Server);
//  5. serving: the listeners' servers and the background work (git
//     polling, config reload, GitLab), until listen_grace_period after
//     ctx is done.
func (s *Server) Run(ctx context.Context) error {
	defer s.repoSet.Close()
	if s.peers != nil {
		defer s.peers.client.Close()
		defer s.peers.forwarder.CloseIdleConnections()
	}
	lns, err := s.bind()
	if err != nil {
		return err
	}
	if s.peers != nil {
		// Tokens are good only at the replica they were made for.
		s.peers.secret.SetSelf(lns.self)
	}
	s.sessions.SetDrain(s.Drain)
	s.tunnel = &tunnel.Server{
		Authenticate: s.authenticate,
		OnSession:    s.handleSession,
		KasVersion:   version.Version,
		Session:      s.sessionConfig(),
		Logger:       s.logger,
		Metrics:      tunnel.NewServerMetrics(s.metrics),
	}

	// The listeners serve until listen_grace_period after ctx is done,
	// with /readyz failing meanwhile (see startGracePeriod); a stage
	// that fails stops them at once.
	serveCtx, stopServing := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopServing(nil)
	defer s.startGracePeriod(ctx, serveCtx, func() { stopServing(nil) }, s.cfg.Agent.Listen.ListenGracePeriod)()
	fail := func(err error) { stopServing(err) }

	var registry, private *stage
	if s.peers != nil {
		registry = startStage(ctx, fail, func(ctx context.Context) error { return s.peers.registry.Run(ctx, lns.self) })
		private = startStage(ctx, fail, func(ctx context.Context) error { return s.servePrivateAPI(ctx, lns.priv) })
	}
	sessCtx, stopSessions := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSessions()
	s.tunnel.Start(sessCtx)
	g, gctx, proxyDone := s.serve(serveCtx, lns)

	s.logStarted(lns)
	close(s.ready)
	<-gctx.Done()

	// The listeners are closing (their servers return on serveCtx).
	// Agents are asked to move now, while the requests in flight finish.
	if s.peers != nil {
		s.peers.registry.Drain(s.cfg.Agent.Listen.DrainTimeout)
	}
	stopSessions()
	<-proxyDone
	s.tunnel.Wait()
	// No agent left here: peers get "not connected" from now on.
	errs := []error{private.stop(), registry.stop()}
	// Stop before closing the listener: Serve treats a listener closed
	// under it as an error, but not one closed by Stop.
	s.grpc.Stop()
	s.grpcLn.Close()
	errs = append([]error{g.Wait()}, errs...)
	s.logger.Info("kas stopped")
	return errors.Join(errs...)
}

// serve starts the serving stage: every listener's server and the
// background work, in an errgroup on ctx (gctx is done when ctx is or one
// of them failed). proxyDone is closed when the Kubernetes API proxy has
// stopped (its requests finished).
func (s *Server) serve(ctx context.Context, lns *listeners) (g *errgroup.Group, gctx context.Context, proxyDone <-chan struct{}) {
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error { return s.repoSet.Run(gctx) })
	if s.apiGRPC != nil {
		g.Go(func() error { return tracker.ServeAPI(gctx, s.apiGRPC, lns.api) })
	}
	if s.tracker != nil {
		g.Go(func() error { return s.tracker.Run(gctx) })
	}
	if tr, ok := s.registry.(tokenRegistry); ok {
		g.Go(func() error { return tr.revalidate(gctx, revalidatePeriod(s.cfg), s.sessions) })
	}
	if s.ConfigFile != "" {
		g.Go(func() error { return s.watchConfig(gctx) })
	}
	if s.gitlab != nil {
		u := usage.New(usage.Config{GitLab: s.gitlab, Metrics: s.metrics, Period: s.cfg.Observability.UsageReportingPeriod, Logger: s.logger})
		g.Go(func() error { return u.Run(gctx) })
	}
	g.Go(func() error {
		err := s.grpc.Serve(s.grpcLn)
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		return httpserve.ServeServer(gctx, lns.obs, s.httpServer(s.apiHandler(s.observabilityHandler()), s.cfg.Limits.ObservabilityReadTimeout), httpserve.DefaultGrace)
	})
	done := make(chan struct{})
	g.Go(func() error {
		defer close(done)
		return s.serveProxy(gctx, lns.kubeAPI)
	})
	if *s.cfg.Agent.Listen.Websocket {
		// No read timeout: the upgraded connection is the tunnel.
		g.Go(func() error {
			return httpserve.ServeServer(gctx, lns.agent, s.httpServer(s.tunnel, 0), httpserve.DefaultGrace)
		})
	} else {
		g.Go(func() error { return s.tunnel.ServeListener(gctx, lns.agent) })
	}
	return g, gctx, done
}

func (s *Server) logStarted(lns *listeners) {
	al := s.cfg.Agent.Listen
	attrs := []any{"version", version.Version, "agent_listen", lns.agent.Addr().String(),
		"websocket", *al.Websocket, "tls", al.CertificateFile != "", "kubernetes_api_listen", lns.kubeAPI.Addr().String(),
		"observability_listen", lns.obs.Addr().String()}
	if s.peers != nil {
		attrs = append(attrs, "private_api_listen", lns.priv.Addr().String(), "private_api_url", lns.self, "redis", s.cfg.Redis.Address)
	}
	s.logger.Info("kas is running", attrs...)
}

// startGracePeriod arranges for stopServing to be called listen_grace_period
// after ctx is done (at once for 0); /readyz fails from the moment ctx is
// done, so load balancers and Services take this replica out of rotation
// while its listeners still accept. It returns a func that cancels the
// arrangement.
func (s *Server) startGracePeriod(ctx, serveCtx context.Context, stopServing context.CancelFunc, grace time.Duration) (cancel func() bool) {
	return context.AfterFunc(ctx, func() {
		s.stopping.Store(true)
		if grace > 0 {
			s.logger.Info("/readyz fails now; the listeners keep serving for listen_grace_period", "listen_grace_period", grace)
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-t.C:
			case <-serveCtx.Done():
			}
		}
		stopServing()
	})
}

// serveProxy serves the Kubernetes API proxy. On stop, watches end at
// once (clients re-establish them) and other requests get the drain
// timeout to finish.
func (s *Server) serveProxy(ctx context.Context, ln net.Listener) error {
	// No read timeout: request bodies stream (exec, port-forward).
	srv := s.httpServer(s.proxy, 0)
	stop := context.AfterFunc(ctx, s.proxy.StopWatches)
	defer stop()
	return httpserve.ServeFast(ctx, ln, srv, s.cfg.Agent.Listen.DrainTimeout)
}

func (s *Server) authenticate(ctx context.Context, h tunnel.Hello) (string, error) {
	a, err := s.registry.AuthenticateAgent(ctx, h.Token)
	if errors.Is(err, ErrUnknownToken) {
		// The same answer for every bad token: it must not tell whether an
		// agent by some name exists.
		reason := "unknown agent token: check --token-file and agents[].token_sha256 in the kas config"
		if s.gitlab != nil {
			reason = "unknown agent token: GitLab does not know it (revoked, or not this GitLab's): check --token-file"
		}
		return "", &tunnel.RefusedError{Status: http.StatusUnauthorized, Reason: reason}
	}
	if err == nil && s.tracker != nil {
		h.Token = ""
		s.hellos.Store(a.Key, h)
	}
	if errors.Is(err, ErrRegistryUnavailable) {
		return "", &tunnel.RefusedError{Status: http.StatusServiceUnavailable, Reason: "kas cannot check the agent token now: GitLab is unavailable; retrying"}
	}
	if err != nil {
		return "", err
	}
	limit := s.limits().MaxConnectionsPerAgent
	count := func() int { return s.sessions.Count(a.Key) }
	if n, ok := s.admissions.admit(a.Key, count, limit, time.Now()); !ok {
		return "", &tunnel.RefusedError{Status: http.StatusTooManyRequests, Reason: fmt.Sprintf("agent %q has %d connections to this kas; limits.max_connections_per_agent is %d", a.Name, n, limit)}
	}
	return a.Key, nil
}

// agentByKey is the registry's agent for a session's key.
func (s *Server) agentByKey(key string) Agent {
	if a, ok := s.registry.Agent(key); ok {
		return a
	}
	return Agent{Key: key, Name: key}
}

// handleSession owns one agent connection: it routes the agent's streams
// to gRPC and leaves the rest of the session's life (rotation at
// max_connection_age, revocation, the drain when kas stops) to
// kas/sessions.
func (s *Server) handleSession(ctx context.Context, ts *tunnel.Session) {
	sess := s.sessions.Add(ts)
	s.admissions.registered(ts.Agent)
	defer s.sessions.Remove(sess)
	agent := s.agentByKey(ts.Agent)
	log := s.logger.With(append(agent.LogAttrs(), "session", sess.ID())...)
	log.Info("Agent connected", "agent_version", ts.AgentVersion, "remote", ts.Remote)
	if !s.sessionStillValid(ts) {
		sess.Revoke("a config reload removed the token this connection authenticated with")
	}
	if s.tracker != nil && agent.ID != 0 {
		h, _ := s.hellos.Load(ts.Agent)
		hello, _ := h.(tunnel.Hello)
		hello.AgentVersion = ts.AgentVersion
		defer s.tracker.Register(tracker.ConnectionInfo(agent, hello, ts.Connected))()
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		s.sessions.AcceptStreams(sess, func(st net.Conn) {
			s.grpcLn.Give(ctx, &agentConn{Conn: st, agent: agent})
		})
	})
	s.sessions.Serve(ctx, sess, log)
	ts.Close()
	log.Info("Agent disconnected")
}
