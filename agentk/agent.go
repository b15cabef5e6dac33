package agentk

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kubetunnel/agentcfg"
	"kubetunnel/api/rpc"
	"kubetunnel/internal/httpserve"
)

// Agent is a configured agentk, ready to Run.
type Agent struct {
	opts    *Options
	logger  *slog.Logger
	level   *slog.LevelVar
	metrics *prometheus.Registry
	rest    *rest.Config

	conn   *connManager
	config *configWatcher
	gitops *gitopsManager

	gitopsMetrics *gitopsMetrics
	identity      *identityMetrics

	mu      sync.Mutex // guards obsAddr
	obsAddr net.Addr
	ready   chan struct{}
}

// New validates opts and loads the cluster credentials. level may be nil;
// when set, the config's observability.logging.level adjusts it.
func New(opts *Options, logger *slog.Logger, level *slog.LevelVar) (*Agent, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	restCfg := opts.REST
	if restCfg == nil {
		var err error
		if restCfg, err = loadRESTConfig(opts.Kubeconfig); err != nil {
			return nil, err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := &Agent{opts: opts, logger: logger, level: level, metrics: reg, rest: restCfg, ready: make(chan struct{})}
	a.config = &configWatcher{logger: logger, level: level}
	a.gitopsMetrics = newGitopsMetrics(reg)
	a.identity = newIdentityMetrics(reg)
	var err error
	fwd, err := newForwarder(restCfg, func() *agentcfg.Config { _, c := a.Config(); return c }, logger)
	if err != nil {
		return nil, err
	}
	meta, err := newAgentMeta(opts, restCfg, logger)
	if err != nil {
		return nil, err
	}
	a.conn, err = newConnManager(opts, logger, fwd, fwd.watches.Stop, reg, meta)
	if err != nil {
		return nil, err
	}
	if sendsTokenInClear(opts.KasAddress) {
		logger.Warn("The agent token goes to kas unencrypted: --kas-address uses ws:// or grpc:// to a host that is not this machine; anyone on the path can read the token and act as this agent. Use wss:// or grpcs://", "kas_address", opts.KasAddress)
	}
	return a, nil
}

func loadRESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("not running in a cluster and no --kubeconfig given: %w", err)
	}
	return cfg, nil
}

// ObservabilityAddr is the bound observability address, after Ready.
func (a *Agent) ObservabilityAddr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.obsAddr
}

// Ready is closed once the observability listener is bound.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Config returns the config in force and its commit.
func (a *Agent) Config() (string, *agentcfg.Config) {
	return a.config.current()
}

// Run connects to kas and serves until ctx is done.
func (a *Agent) Run(ctx context.Context) error {
	ln, err := net.Listen(a.opts.ObservabilityListenNetwork, a.opts.ObservabilityListen)
	if err != nil {
		return fmt.Errorf("--observability-listen-address %s: %w", a.opts.ObservabilityListen, err)
	}
	if a.opts.ObservabilityCertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.opts.ObservabilityCertFile, a.opts.ObservabilityKeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--observability-cert-file: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	a.mu.Lock()
	a.obsAddr = ln.Addr()
	a.mu.Unlock()

	cc, err := grpc.NewClient("passthrough:///kas",
		grpc.WithContextDialer(a.conn.dialStream),
		// The tunnel is already authenticated and, with wss/grpcs, encrypted.
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 20 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)
	if err != nil {
		ln.Close()
		return err
	}
	defer cc.Close()
	a.config.client = rpc.NewConfigurationClient(cc)
	newSyncer := a.opts.Syncer
	if newSyncer == nil {
		newSyncer = defaultSyncer(a.rest, a.logger)
	}
	a.gitops = newGitopsManager(rpc.NewGitOpsClient(cc), newSyncer, a.logger, a.gitopsMetrics, a.opts.ReconcilePeriod)
	a.config.onConfig = func(name, _ string, cfg *agentcfg.Config) { a.gitops.update(name, cfg) }
	a.config.onAgentName = a.identity.setAgent

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.conn.Run(gctx) })
	g.Go(func() error { return a.config.Run(gctx) })
	g.Go(func() error { return a.gitops.Run(gctx) })
	g.Go(func() error { return a.serveObservability(gctx, ln) })
	close(a.ready)
	return g.Wait()
}

func (a *Agent) serveObservability(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{}))
	// /liveness and /readiness are the paths of GitLab's agentk, which
	// its Helm chart probes.
	for _, path := range []string{"/healthz", "/liveness"} {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("ok\n"))
		})
	}
	for _, path := range []string{"/readyz", "/readiness"} {
		mux.HandleFunc("GET "+path, a.serveReady)
	}
	return httpserve.Serve(ctx, ln, mux)
}

// serveReady answers 200 while connected to kas, else 503 with the last
// connection error. A config.yaml that could not be used does not make
// agentk unready (it serves with the last good or the default config),
// but the answer says so.
func (a *Agent) serveReady(w http.ResponseWriter, _ *http.Request) {
	ok, lastErr := a.conn.status()
	var b strings.Builder
	code := http.StatusOK
	if ok {
		b.WriteString("ok\n")
	} else {
		code = http.StatusServiceUnavailable
		b.WriteString("not connected to kas")
		if lastErr != nil {
			b.WriteString(": " + lastErr.Error())
		}
		b.WriteString("\n")
	}
	if problem := a.config.status(); problem != "" {
		b.WriteString("config: " + problem + "\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write([]byte(b.String()))
}
