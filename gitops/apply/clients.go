package apply

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/transport"
)

// Client-side rate limits used when the given rest.Config leaves them at
// zero. client-go's own defaults (5 QPS, burst 10) made the first cluster
// cache sync take 12.4 s instead of 0.4 s; at 50/100 applying 1,000
// objects took 18 s, bound by the limiter (5.4 s without one). 100/200
// keeps a first apply of 1,000 objects under 15 s while API Priority and
// Fairness still protects the server.
const (
	DefaultQPS   = 100
	DefaultBurst = 200
)

// clients are the API clients of one Applier, shared by the cluster cache
// and every sync: one transport (so connections are reused whatever
// gitops-engine builds from the config), one discovery cache and one
// RESTMapper.
type clients struct {
	// config carries the shared transport; gitops-engine builds its own
	// clients from it.
	config    *rest.Config
	transport http.RoundTripper
	dynamic   dynamic.Interface
	mapper    *restmapper.DeferredDiscoveryRESTMapper

	resetMu   sync.Mutex // guards lastReset
	lastReset time.Time

	// applyConfig is the config of dynamic (warnings at WARN); as derives
	// impersonating clients from it.
	applyConfig *rest.Config

	// writes bounds the object writes in flight. gitops-engine starts one
	// goroutine per object of a wave; without a bound a thousand requests
	// queue in client-go's rate limiter, which logs (through klog) every
	// request that waited over a second.
	writes chan struct{}
}

const (
	// maxWrites is how many object writes run at once.
	maxWrites = 16
	// resetInterval is the shortest time between two discovery refreshes.
	resetInterval = 200 * time.Millisecond
)

// acquire waits for a write slot; release it with the returned func.
func (c *clients) acquire(ctx context.Context) (func(), error) {
	select {
	case c.writes <- struct{}{}:
		return func() { <-c.writes }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func newClients(cfg *rest.Config, logger *slog.Logger) (*clients, error) {
	c := rest.CopyConfig(cfg)
	if c.QPS == 0 {
		c.QPS = DefaultQPS
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	rt, err := rest.TransportFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client transport: %w", err)
	}
	// Everything the transport already does (TLS, credentials,
	// impersonation, dialing) is cleared, so clients built from shared
	// use rt as it is.
	shared := rest.CopyConfig(c)
	shared.Transport = rt
	shared.TLSClientConfig = rest.TLSClientConfig{}
	shared.BearerToken, shared.BearerTokenFile = "", ""
	shared.Username, shared.Password = "", ""
	shared.AuthProvider, shared.AuthConfigPersister, shared.ExecProvider = nil, nil, nil
	shared.Impersonate = rest.ImpersonationConfig{}
	shared.Dial, shared.Proxy, shared.WrapTransport = nil, nil, nil

	// The cluster cache lists deprecated APIs (v1 Endpoints) and the API
	// server says so on every list: those warnings go to debug. Warnings
	// about applied objects are the manifests' authors' business: warn.
	shared.WarningHandlerWithContext = warningLogger{logger, slog.LevelDebug}
	applyCfg := rest.CopyConfig(shared)
	applyCfg.WarningHandlerWithContext = warningLogger{logger, slog.LevelWarn}
	dyn, err := dynamic.NewForConfig(applyCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(shared)
	if err != nil {
		return nil, fmt.Errorf("kubernetes discovery client: %w", err)
	}
	return &clients{
		config:      shared,
		transport:   rt,
		dynamic:     dyn,
		mapper:      restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco)),
		applyConfig: applyCfg,
		writes:      make(chan struct{}, maxWrites),
	}, nil
}

// as returns clients whose object reads and writes impersonate the
// service account namespace/name, sharing the transport, discovery and
// write slots. The agent's identity needs the impersonate verb on that
// service account.
func (c *clients) as(namespace, name string) (*clients, error) {
	// The names the API server gives a service account's token.
	user := "system:serviceaccount:" + namespace + ":" + name
	cfg := rest.CopyConfig(c.applyConfig)
	cfg.Transport = transport.NewImpersonatingRoundTripper(transport.ImpersonationConfig{
		UserName: user,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}, c.transport)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client for %s: %w", user, err)
	}
	return &clients{
		config:      c.config,
		transport:   c.transport,
		dynamic:     dyn,
		mapper:      c.mapper,
		applyConfig: cfg,
		writes:      c.writes,
	}, nil
}

// close drops idle connections.
func (c *clients) close() {
	utilnet.CloseIdleConnectionsFor(c.transport)
}

// mapping finds how the API server serves a kind. A kind it does not know
// yet (a CRD created moments ago) gets one discovery refresh before
// ErrUnknownKind.
func (c *clients) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// Many goroutines may miss the same new kind at once: one refresh
		// per resetInterval serves them all.
		c.resetMu.Lock()
		if time.Since(c.lastReset) > resetInterval {
			c.mapper.Reset()
			c.lastReset = time.Now()
		}
		c.resetMu.Unlock()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("%w %s (apiVersion %s): the cluster does not serve it and no CustomResourceDefinition among the manifests defines it",
			ErrUnknownKind, gvk.Kind, gvk.GroupVersion())
	}
	if err != nil {
		return nil, fmt.Errorf("discover %s: %w", gvk, err)
	}
	return m, nil
}

// namespaced is a scopeFunc backed by discovery.
func (c *clients) namespaced(gvk schema.GroupVersionKind) (bool, error) {
	m, err := c.mapping(gvk)
	if err != nil {
		return false, err
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// resource is the dynamic client for an object of gvk in namespace (which
// is ignored for cluster-scoped kinds).
func (c *clients) resource(gvk schema.GroupVersionKind, namespace string) (dynamic.ResourceInterface, *meta.RESTMapping, error) {
	m, err := c.mapping(gvk)
	if err != nil {
		return nil, nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dynamic.Resource(m.Resource).Namespace(namespace), m, nil
	}
	return c.dynamic.Resource(m.Resource), m, nil
}

// warningLogger logs the API server's warnings (deprecated APIs, unknown
// fields) instead of client-go's default, klog.
type warningLogger struct {
	logger *slog.Logger
	level  slog.Level
}

func (w warningLogger) HandleWarningHeaderWithContext(ctx context.Context, code int, _ string, text string) {
	if code == 299 && text != "" {
		w.logger.Log(ctx, w.level, "GitOps: Kubernetes API warning", "warning", text)
	}
}
