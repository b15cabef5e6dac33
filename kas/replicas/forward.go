package replicas

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"kubetunnel/internal/kubehttp"
	"kubetunnel/kasproxy"
)

// Forwarding settings.
const (
	// unreachableFor is how long a peer that refused a connection is
	// tried after the others.
	unreachableFor = 10 * time.Second
	// expectContinueTimeout bounds the wait for a peer's "100 Continue"
	// before a request body is sent anyway.
	expectContinueTimeout = 5 * time.Second
)

// Lookuper finds the peers that hold an agent, in the order to try them.
type Lookuper interface {
	Lookup(ctx context.Context, agent string) ([]string, error)
}

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	Registry Lookuper
	Secret   *Secret
	// TLS verifies peers whose URLs are https (nil: system roots).
	TLS         *tls.Config
	DialTimeout time.Duration
	Logger      *slog.Logger
	Metrics     *Metrics
}

// Forwarder sends proxied requests to the peer replica that holds the
// agent. Its transports are what kasproxy uses when the agent has no
// session on this replica.
type Forwarder struct {
	cfg       ForwarderConfig
	transport *http.Transport

	mu          sync.Mutex // guards unreachable
	unreachable map[string]time.Time
}

// NewForwarder makes a forwarder.
func NewForwarder(cfg ForwarderConfig) *Forwarder {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tlsCfg := cfg.TLS.Clone()
	if tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// Upgrades (exec, port-forward) need HTTP/1.1.
	tlsCfg.NextProtos = []string{"http/1.1"}
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return &Forwarder{
		cfg: cfg,
		transport: &http.Transport{
			DialContext:           d.DialContext,
			TLSClientConfig:       tlsCfg,
			TLSHandshakeTimeout:   10 * time.Second,
			MaxIdleConns:          1000,
			MaxIdleConnsPerHost:   100,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: expectContinueTimeout,
			DisableCompression:    true, // pass the caller's Accept-Encoding through
		},
		unreachable: map[string]time.Time{},
	}
}

// CloseIdleConnections closes pooled connections to peers.
func (f *Forwarder) CloseIdleConnections() { f.transport.CloseIdleConnections() }

// Transport returns the round tripper for requests to agent.
func (f *Forwarder) Transport(agent string) http.RoundTripper {
	return kasproxy.RoundTripperFunc(func(r *http.Request) (*http.Response, error) { return f.roundTrip(agent, r) })
}

func (f *Forwarder) count(result string) {
	if f.cfg.Metrics != nil {
		f.cfg.Metrics.Forwards.WithLabelValues(result).Inc()
	}
}

// roundTrip tries the peers holding agent in turn. It moves on to the
// next only when nothing of the request body was sent: the peer could not
// be reached, answered that it does not hold the agent, or (for a GET)
// closed the connection without an answer. When no peer had the agent,
// it looks again once: the agent may be moving between replicas (GoAway),
// its new replica registering just after the first lookup.
func (f *Forwarder) roundTrip(agent string, r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	u, ok := kasproxy.UserFromContext(ctx)
	if !ok {
		return nil, errors.New("forwarding to a kas peer: no authenticated caller")
	}
	var body *kubehttp.GuardedBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &kubehttp.GuardedBody{ReadCloser: r.Body}
	}
	for round := range 2 {
		if round > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(lookAgainAfter):
			}
		}
		peers, err := f.cfg.Registry.Lookup(ctx, agent)
		if err != nil {
			return nil, kasproxy.Unavailable(fmt.Sprintf("agent %q is not connected to this kas replica and the agent registry is unreachable", agent), err)
		}
		for _, peer := range f.order(peers) {
			resp, err := f.try(ctx, r, peer, agent, u, body)
			if !errors.Is(err, errTryNext) {
				return resp, err
			}
		}
	}
	return nil, kasproxy.ErrAgentNotConnected
}

// lookAgainAfter is the pause before the second lookup.
const lookAgainAfter = 100 * time.Millisecond

// errTryNext: this peer did not take the request, the next one may.
var errTryNext = errors.New("try the next peer")

func (f *Forwarder) try(ctx context.Context, r *http.Request, peer, agent string, u kasproxy.User, body *kubehttp.GuardedBody) (*http.Response, error) {
	out, err := f.request(ctx, r, peer, agent, body)
	if err != nil {
		f.count("error")
		return nil, err
	}
	// A token for this request to this peer only, made as it is sent.
	token, err := f.cfg.Secret.Sign(u, agent, TargetOf(peer, out))
	if err != nil {
		f.count("error")
		return nil, fmt.Errorf("signing a private API token: %w", err)
	}
	out.Header.Set("Authorization", "Bearer "+token)
	resp, err := f.transport.RoundTrip(out)
	sent := body != nil && body.Touched()
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, err
	case err != nil && isDialError(err) && !sent:
		f.count("unreachable")
		f.markUnreachable(peer)
		f.cfg.Logger.Debug("kas peer unreachable, trying the next", "agent", agent, "peer", peer, "err", err)
		return nil, errTryNext
	case err != nil && !sent && body == nil && isSafe(r):
		// A peer that stops closes idle connections; a request caught on
		// one gets no answer and was not served.
		f.count("unreachable")
		f.cfg.Logger.Debug("kas peer closed the connection, trying the next", "agent", agent, "peer", peer, "err", err)
		return nil, errTryNext
	case err != nil:
		f.count("error")
		return nil, fmt.Errorf("kas peer %s: %w", peer, err)
	case resp.StatusCode == http.StatusUnauthorized:
		// The peer's private API answers 401 only to a token it cannot
		// verify: the caller was authenticated here, the replicas disagree.
		resp.Body.Close()
		f.count("error")
		return nil, fmt.Errorf("kas peer %s refused this replica's private API token: every replica needs the same private_api.authentication_secret_file (and clocks within %v)", peer, TokenLeeway)
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(kasproxy.HeaderAgentNotConnected) != "" && !sent:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		f.count("not_connected")
		f.cfg.Logger.Debug("kas peer does not hold the agent, trying the next", "agent", agent, "peer", peer)
		return nil, errTryNext
	}
	f.count("ok")
	return resp, nil
}

// isSafe is a request that may be sent twice: a read, not an upgrade.
func isSafe(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions) && r.Header.Get("Upgrade") == ""
}

// request is r addressed to the peer's private API; try adds the token
// (kasproxy stripped any caller credential).
func (f *Forwarder) request(ctx context.Context, r *http.Request, peer, agent string, body *kubehttp.GuardedBody) (*http.Request, error) {
	base, err := url.Parse(peer)
	if err != nil {
		return nil, fmt.Errorf("kas peer URL %q in the agent registry: %w", peer, err)
	}
	out := r.Clone(ctx)
	out.URL = &url.URL{Scheme: base.Scheme, Host: base.Host, Path: "/agents/" + agent + r.URL.Path, RawQuery: r.URL.RawQuery}
	out.Host = base.Host
	out.RequestURI = ""
	if body != nil {
		out.Body = body
		// The peer sends "100 Continue" only once it reads the body, which
		// it does not when it no longer holds the agent: the body stays
		// here and the next peer can have it.
		out.Header.Set("Expect", "100-continue")
	}
	return out, nil
}

func (f *Forwarder) markUnreachable(peer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unreachable[peer] = time.Now()
}

// order moves peers that recently refused connections to the end.
func (f *Forwarder) order(peers []string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for p, t := range f.unreachable {
		if now.Sub(t) > unreachableFor {
			delete(f.unreachable, p)
		}
	}
	slices.SortStableFunc(peers, func(a, b string) int {
		_, ua := f.unreachable[a]
		_, ub := f.unreachable[b]
		switch {
		case ua == ub:
			return 0
		case ub:
			return -1
		}
		return 1
	})
	return peers
}

// isDialError is a failure to connect: nothing of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
