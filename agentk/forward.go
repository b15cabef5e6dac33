package agentk

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"

	"kubetunnel/agentcfg"
	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/internal/kubehttp"
	"kubetunnel/internal/streamhttp"
	"kubetunnel/tunnel"
	"kubetunnel/tunnel/wire"
)

// forwarder sends the Kubernetes API requests kas proxies through the
// tunnel on to the cluster's API server, with agentk's own credentials,
// as the identity its config's user_access decides.
type forwarder struct {
	config func() *agentcfg.Config
	base   *url.URL
	// rt may speak HTTP/2; upgrades (exec, attach, port-forward) need
	// HTTP/1.1, which upgradeRT is restricted to.
	rt, upgradeRT http.RoundTripper
	// shortH1 counts short requests in flight on upgradeRT (RoundTrip).
	shortH1 atomic.Int32
	shortRT http.RoundTripper // shortTransport, else upgradeRT
	rp      *httputil.ReverseProxy
	logger  *slog.Logger
	// watches in flight, ended cleanly when agentk stops
	watches kubehttp.Watches
}

// fwdKey carries a request's identity decision from ServeHTTP to the
// rewrite.
type fwdKey struct{}

// identity is who a request goes to the API server as.
type identity struct {
	impersonate bool // as the caller (user_access.access_as: user)
	user        string
	groups      []string
	gitlab      *gitlabaccess.Identity // a GitLab caller's (impersonate.go)
}

// errStopping refuses a watch that starts while agentk stops.
var errStopping = errors.New("agentk is stopping")

func newForwarder(cfg *rest.Config, config func() *agentcfg.Config, logger *slog.Logger) (*forwarder, error) {
	host := cfg.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	base, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("API server address %q: %w", cfg.Host, err)
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("API server transport: %w", err)
	}
	h1 := rest.CopyConfig(cfg)
	h1.TLSClientConfig.NextProtos = []string{"http/1.1"}
	upgradeRT, err := rest.TransportFor(h1)
	if err != nil {
		return nil, fmt.Errorf("API server transport: %w", err)
	}
	f := &forwarder{config: config, base: base, rt: rt, upgradeRT: upgradeRT, logger: logger}
	f.shortRT, err = shortTransport(h1, base)
	if err != nil {
		return nil, fmt.Errorf("API server transport: %w", err)
	}
	if f.shortRT == nil {
		f.shortRT = upgradeRT
	}
	f.rp = &httputil.ReverseProxy{
		// ReverseProxy copies the request; Rewrite edits the copy.
		Rewrite: func(pr *httputil.ProxyRequest) {
			id, _ := pr.In.Context().Value(fwdKey{}).(*identity)
			f.rewrite(pr.Out, pr.In.URL.Path, id)
		},
		Transport: http.RoundTripper(f),
		// 0: a response of known length goes out in as few writes as
		// it takes; one of unknown length (watches, logs -f, event
		// streams) is still flushed after every write, which
		// ReverseProxy does by itself for ContentLength -1.
		FlushInterval: 0,
		BufferPool:    kubehttp.CopyBuffers,
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusOK && kubehttp.IsWatch(resp.Request) {
				b, ok := f.watches.Track(resp.Body)
				if !ok {
					return errStopping
				}
				resp.Body = b
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, errStopping) {
				kubehttp.WriteStatus(w, r, http.StatusServiceUnavailable, "agentk is stopping: retry, the request goes to another agentk replica or the restarted one")
				return
			}
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				return // kas (the caller) went away
			}
			logger.Warn("Request to the API server failed", "path", r.URL.Path, "err", err)
			kubehttp.WriteStatus(w, r, http.StatusBadGateway, fmt.Sprintf("agentk could not reach the cluster's API server: %v", err))
		},
	}
	return f, nil
}

// rewrite points out at the API server and sets who it goes as: the
// caller's Kas-*, Impersonate-*, Authorization and Cookie headers go,
// the impersonation headers of id come.
func (f *forwarder) rewrite(out *http.Request, path string, id *identity) {
	out.URL.Scheme = f.base.Scheme
	out.URL.Host = f.base.Host
	out.URL.Path = strings.TrimSuffix(f.base.Path, "/") + path
	out.URL.RawPath = ""
	out.Host = f.base.Host
	kubehttp.StripCallerHeaders(out.Header)
	if id != nil && id.gitlab != nil {
		id.gitlab.SetImpersonationHeaders(out.Header)
	} else if id != nil && id.impersonate {
		out.Header.Set("Impersonate-User", id.user)
		for _, g := range id.groups {
			out.Header.Add("Impersonate-Group", g)
		}
	}
}

// shortTransport is the transport for short requests: HTTP/1.1 written
// and read on the caller's goroutine (streamhttp.Transport over TLS),
// with client-go's authentication wrappers, which spares
// http.Transport's two goroutine hand-offs per request (its connection's
// write and read loops). Nil (use client-go's own transport) when
// something in cfg needs client-go's dialing: a proxy, a custom dialer,
// client certificate files (client-go reloads them when they rotate).
func shortTransport(cfg *rest.Config, base *url.URL) (http.RoundTripper, error) {
	if cfg.Proxy != nil || cfg.Dial != nil || cfg.CertFile != "" || cfg.KeyFile != "" ||
		(base.Scheme != "https" && base.Scheme != "http") {
		return nil, nil
	}
	if u, err := http.ProxyFromEnvironment(&http.Request{URL: base}); err != nil || u != nil {
		return nil, nil
	}
	hostport := base.Host
	if base.Port() == "" {
		hostport = net.JoinHostPort(base.Hostname(), map[string]string{"https": "443", "http": "80"}[base.Scheme])
	}
	nd := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context) (net.Conn, error) { return nd.DialContext(ctx, "tcp", hostport) }
	if base.Scheme == "https" {
		tlsCfg, err := rest.TLSConfigFor(cfg)
		if err != nil {
			return nil, err
		}
		td := &tls.Dialer{NetDialer: nd, Config: tlsCfg}
		dial = func(ctx context.Context) (net.Conn, error) { return td.DialContext(ctx, "tcp", hostport) }
	}
	rt, err := rest.HTTPWrappersForConfig(cfg, &streamhttp.Transport{Dial: dial, MaxIdle: maxShortH1})
	if err != nil || cfg.ExecProvider != nil || cfg.AuthProvider != nil || cfg.Username != "" ||
		(cfg.BearerToken == "" && cfg.BearerTokenFile == "") {
		return rt, err
	}
	b := &ownBearer{token: cfg.BearerToken, rt: rt}
	if cfg.BearerTokenFile != "" {
		// client-go's own source for the file: cached for a minute,
		// then read again, so a rotated token is picked up.
		src := transport.NewCachedFileTokenSource(cfg.BearerTokenFile)
		if b.token == "" {
			t, err := src.Token()
			if err != nil {
				return nil, fmt.Errorf("bearer token file: %w", err)
			}
			b.token = t.AccessToken
		}
		b.refresh = func() (string, bool) {
			t, err := src.Token()
			if err != nil {
				return "", false
			}
			return t.AccessToken, true
		}
	}
	return b, nil
}

// ownBearer sets agentk's bearer token on the request itself, as
// client-go's wrapper would (the same token, or the file's as it rotates),
// before that wrapper sees it: the wrapper passes a request that already
// has Authorization through as it is, where it would copy the request and
// its header to set it. The forwarder owns every request it sends
// (wire.Serve's, or ReverseProxy's copy), and rewrite removed the
// caller's Authorization before.
type ownBearer struct {
	token   string
	refresh func() (string, bool) // nil: the token is static
	rt      http.RoundTripper
}

func (b *ownBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	token := b.token
	if b.refresh != nil {
		if t, ok := b.refresh(); ok {
			token = t
		}
	}
	r.Header["Authorization"] = []string{"Bearer " + token}
	return b.rt.RoundTrip(r)
}

// maxShortH1 bounds the short requests in flight on HTTP/1.1 at once;
// more go on HTTP/2. It stays below client-go's 25 idle connections per
// host, so every connection a burst opens is kept for the next request
// instead of being closed (and its TLS handshake paid again).
const maxShortH1 = 16

// RoundTrip picks the transport: HTTP/1.1 for upgrades (they need it)
// and for short requests, HTTP/2 for watches and for short requests
// beyond maxShortH1 in flight. An HTTP/1.1 keep-alive exchange is one
// write and one read on a connection of its own; HTTP/2 adds framing,
// flow control and a hand-off to the connection's read loop, which cost
// a small GET about 150 µs here (docs/benchmarks.md). A watch holds its
// connection for minutes, so watches share HTTP/2 connections instead
// of holding one each.
func (f *forwarder) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Upgrade") != "" {
		return f.upgradeRT.RoundTrip(r)
	}
	if !kubehttp.IsWatch(r) {
		if f.shortH1.Add(1) <= maxShortH1 {
			resp, err := f.shortRT.RoundTrip(r)
			if err != nil {
				f.shortH1.Add(-1)
				return nil, err
			}
			resp.Body = &h1Body{ReadCloser: resp.Body, inFlight: &f.shortH1}
			return resp, nil
		}
		f.shortH1.Add(-1)
	}
	return f.rt.RoundTrip(r)
}

// h1Body counts its request out of the HTTP/1.1 ones in flight when
// closed.
type h1Body struct {
	io.ReadCloser
	inFlight *atomic.Int32
	closed   atomic.Bool
}

func (b *h1Body) Close() error {
	if !b.closed.Swap(true) {
		b.inFlight.Add(-1)
	}
	return b.ReadCloser.Close()
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := f.config()
	if cfg == nil {
		kubehttp.WriteStatus(w, r, http.StatusServiceUnavailable, "agentk has not received its configuration from kas yet: retry in a moment")
		return
	}
	user := r.Header.Get(tunnel.HeaderProxyUser)
	groups := r.Header.Values(tunnel.HeaderProxyGroup)
	if user == "" {
		// Only kas opens streams to agentk, and it always says who the
		// caller is; anything else is refused rather than served as agentk.
		kubehttp.WriteStatus(w, r, http.StatusForbidden, "agentk refuses a proxied request that does not name its caller")
		return
	}
	if v, ok := r.Header[tunnel.HeaderGitLabIdentity]; ok {
		f.serveGitLab(w, r, v)
		return
	}
	ua := cfg.UserAccess
	if !ua.Admits(groups) {
		kubehttp.WriteStatus(w, r, http.StatusForbidden, fmt.Sprintf("user %q is in none of the groups this agent's user_access.groups admits", user))
		return
	}
	id := &identity{impersonate: ua.AccessAs.User != nil, user: user, groups: groups}
	f.proxy(w, r, id)
}

// proxy sends r to the API server as id: a protocol-2 request straight
// through the transport (forward2.go), a protocol-1 one through the
// reverse proxy.
func (f *forwarder) proxy(w http.ResponseWriter, r *http.Request, id *identity) {
	if ww, ok := w.(*wire.ResponseWriter); ok {
		f.forward(ww, r, id)
		return
	}
	f.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), fwdKey{}, id)))
}
