package kasproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/internal/kubehttp"
	"kubetunnel/tunnel"
)

// Errors the proxy branches on.
var (
	// ErrUnauthenticated is a missing or unknown caller token.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrAgentNotConnected is an agent with no live tunnel.
	ErrAgentNotConnected = errors.New("agent is not connected")
	// ErrUnavailable marks an error that is a 503 whose message is the
	// error's text (see Unavailable).
	ErrUnavailable  = errors.New("unavailable")
	errShuttingDown = errors.New("kas is shutting down")
)

// HeaderAgentNotConnected is set on the 503 for an agent with no live
// session here. A kas replica that forwarded the request to a peer reads
// it to try the next peer.
const HeaderAgentNotConnected = "Kas-Agent-Not-Connected"

// Unavailable is an error that the proxy answers with 503 and msg, for
// causes a caller cannot fix but should know (a registry that is down).
func Unavailable(msg string, cause error) error {
	return &unavailableError{msg: msg, cause: cause}
}

type unavailableError struct {
	msg   string
	cause error
}

func (e *unavailableError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

// UserFromContext returns the authenticated caller of a proxied request;
// a Tunnels transport uses it to pass the identity on to a kas peer.
func UserFromContext(ctx context.Context) (User, bool) {
	ri, ok := ctx.Value(keyInfo).(*reqInfo)
	if !ok || ri.user == nil {
		return User{}, false
	}
	return *ri.user, true
}

// Defaults, in one place.
const (
	DefaultMaxStreamsPerAgent = 500
	// DefaultMaxStreamsPerUser leaves an agent's other callers most of
	// its slots when one caller floods it.
	DefaultMaxStreamsPerUser = 100
	DefaultIdleConnTimeout   = 90 * time.Second
	DefaultMaxIdleConns      = 100
)

// User is an authenticated caller.
type User struct {
	Name   string
	Groups []string
	// Agents the caller may reach.
	Agents []string
}

// Authenticator checks a caller's bearer token; ErrUnauthenticated when it
// matches nobody.
type Authenticator interface {
	AuthenticateUser(ctx context.Context, token string) (User, error)
}

// RequestAuthenticator is an Authenticator whose tokens are bound to the
// request they come with (the private API's); the proxy prefers it.
type RequestAuthenticator interface {
	Authenticator
	AuthenticateRequest(r *http.Request, token string) (User, error)
}

// Tunnels picks one of an agent's live sessions and returns its HTTP
// transport (a pool of connections that are tunnel streams);
// ErrAgentNotConnected when there is none. Picking per request spreads
// load over the agent's replicas.
type Tunnels interface {
	RoundTripper(agent string) (http.RoundTripper, error)
}

// Config configures a Proxy; zero fields take the defaults.
type Config struct {
	Users   Authenticator
	Tunnels Tunnels
	Logger  *slog.Logger
	// Metrics may be nil (no metrics).
	Metrics *Metrics
	// MaxStreamsPerAgent bounds requests in flight per agent; over it is a
	// 429 rather than a queue.
	MaxStreamsPerAgent int
	// MaxStreamsPerUser bounds one caller's requests in flight per agent.
	MaxStreamsPerUser int
	// AuthFailures limits failed authentications per client address.
	AuthFailures *FailureLimiter
	// WriteTimeout bounds each write of a response to the caller.
	WriteTimeout time.Duration
	// StallAfter is how long a write must block for the response to
	// count as stalled (and be charged StreamWindow).
	StallAfter time.Duration
	// StreamWindow is the most a stalled response holds in kas: the
	// tunnel's stream window.
	StreamWindow int64
	// MaxBufferedBytesPerUser and MaxBufferedBytes bound what stalled
	// responses hold, per caller and in total; a response that would go
	// over is ended.
	MaxBufferedBytesPerUser int64
	MaxBufferedBytes        int64
	// TrustedProxies are the addresses of proxies in front of kas (an
	// ingress) whose X-Forwarded-For says who the client is.
	TrustedProxies []netip.Prefix
	// GitLab, when set, serves GitLab's callers (CI jobs, users) as
	// GitLab's kas does; static users keep /agents/<name>/.
	GitLab *GitLabAccess
}

// Proxy is the http.Handler for agent.kubernetes_api.listen.
type Proxy struct {
	cfg Config
	rp  *httputil.ReverseProxy

	mu       sync.Mutex // guards perAgent and perUser
	perAgent map[string]int
	perUser  map[slotKey]int
	// watches in flight, ended cleanly by StopWatches
	watches kubehttp.Watches
	// budget for responses whose callers stopped reading
	budget *budget
	stalls *stallWatch
}

type ctxKey int

const keyInfo ctxKey = iota

// reqInfo is what the handler learns about a request, for the rewrite,
// the transport, the error handler, metrics and the audit line.
type reqInfo struct {
	user *User
	// grant is GitLab's yes for a GitLab caller; nil for static users.
	grant *gitlabaccess.Grant
	// peerIdentity is the GitLab identity a kas peer forwarded with a
	// GitLab caller's request (private API): kept for agentk.
	peerIdentity string
	agent        string
	rest         string // the API path
	verb         string
	rt           http.RoundTripper // the agent's tunnel
	status       int
	err          error
}

// New makes a proxy.
func New(cfg Config) *Proxy {
	if cfg.MaxStreamsPerAgent <= 0 {
		cfg.MaxStreamsPerAgent = DefaultMaxStreamsPerAgent
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AuthFailures == nil {
		cfg.AuthFailures = NewFailureLimiter(DefaultAuthFailureBurst, DefaultAuthFailureWindow)
	}
	if cfg.MaxStreamsPerUser <= 0 {
		cfg.MaxStreamsPerUser = DefaultMaxStreamsPerUser
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = DefaultStallAfter
	}
	if cfg.StreamWindow <= 0 {
		cfg.StreamWindow = tunnel.DefaultMaxStreamWindow
	}
	if cfg.MaxBufferedBytesPerUser <= 0 {
		cfg.MaxBufferedBytesPerUser = DefaultMaxBufferedBytesPerUser
	}
	if cfg.MaxBufferedBytes <= 0 {
		cfg.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	p := &Proxy{cfg: cfg, perAgent: map[string]int{}, perUser: map[slotKey]int{},
		budget: newBudget(cfg.StreamWindow, cfg.MaxBufferedBytesPerUser, cfg.MaxBufferedBytes),
		stalls: newStallWatch(cfg.StallAfter)}
	p.budget.metrics = cfg.Metrics
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: RoundTripperFunc(p.roundTrip),
		// 0: a response of known length goes out in as few writes as
		// it takes; one of unknown length (watches, logs -f, event
		// streams) is still flushed after every write, which
		// ReverseProxy does by itself for ContentLength -1.
		FlushInterval: 0,
		BufferPool:    kubehttp.CopyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.fail(w, r, info(r.Context()), err)
		},
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		ModifyResponse: func(resp *http.Response) error {
			return p.modifyResponse(resp, info(resp.Request.Context()))
		},
	}
	return p
}

// modifyResponse notes the agent's answer for the audit line and the
// metrics, and tracks a watch (StopWatches ends it).
func (p *Proxy) modifyResponse(resp *http.Response, ri *reqInfo) error {
	ri.status = resp.StatusCode
	if p.cfg.GitLab != nil {
		gitlabaccess.StripClusterCORS(resp.Header)
	}
	if ri.verb == "watch" && resp.StatusCode == http.StatusOK {
		b, ok := p.watches.Track(resp.Body)
		if !ok {
			return errShuttingDown
		}
		resp.Body = b
	}
	return nil
}

// reverseProxy proxies r through httputil.ReverseProxy, which copies the
// request (rewrite edits the copy) and, after a 101, splices the two
// connections.
func (p *Proxy) reverseProxy(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyInfo, ri)))
}

// RoundTripperFunc adapts a function to http.RoundTripper (as
// http.HandlerFunc does for handlers); kas's tunnels build on it too.
type RoundTripperFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f(r).
func (f RoundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func info(ctx context.Context) *reqInfo {
	i, _ := ctx.Value(keyInfo).(*reqInfo)
	if i == nil {
		return &reqInfo{}
	}
	return i
}

// StopWatches ends every watch in flight cleanly and refuses new ones.
// kas calls it when it shuts down: watches never finish by themselves,
// while the other requests are left to drain.
func (p *Proxy) StopWatches() { p.watches.Stop() }

// slotKey is one caller's requests to one agent.
type slotKey struct{ agent, user string }

// acquire takes a slot for a request of user to agent, or says why not:
// the agent has MaxStreamsPerAgent requests in flight, or this user has
// MaxStreamsPerUser of them, so that one caller cannot take every slot.
func (p *Proxy) acquire(agent, user string) (refused string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := slotKey{agent, user}
	switch {
	case p.perAgent[agent] >= p.cfg.MaxStreamsPerAgent:
		return fmt.Sprintf("agent %q has %d requests in flight, the limit: retry later", agent, p.cfg.MaxStreamsPerAgent)
	case p.perUser[k] >= p.cfg.MaxStreamsPerUser:
		return fmt.Sprintf("user %q has %d requests in flight to agent %q, the limit per user: retry later", user, p.cfg.MaxStreamsPerUser, agent)
	}
	p.perAgent[agent]++
	p.perUser[k]++
	return ""
}

func (p *Proxy) release(agent, user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := slotKey{agent, user}
	// Entries go at zero: the maps stay as small as the requests in flight.
	if p.perAgent[agent]--; p.perAgent[agent] <= 0 {
		delete(p.perAgent, agent)
	}
	if p.perUser[k]--; p.perUser[k] <= 0 {
		delete(p.perUser, k)
	}
}

func (p *Proxy) roundTrip(r *http.Request) (*http.Response, error) {
	rt := info(r.Context()).rt
	if rt == nil {
		return nil, errors.New("kasproxy: no transport for the request")
	}
	return rt.RoundTrip(r)
}

// rewrite makes the request agentk gets out of the caller's, in the copy
// ReverseProxy has made (hop-by-hop headers already gone).
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	ri := info(pr.In.Context())
	out := pr.Out
	out.URL = &url.URL{Scheme: "http", Host: "agentk", Path: ri.rest, RawQuery: pr.In.URL.RawQuery}
	out.Host = "agentk"
	out.RequestURI = ""
	kubehttp.StripCallerHeaders(out.Header)
	p.addIdentity(out, ri)
}

// addIdentity finishes the request agentk gets, once the caller's
// credentials and Kas-* headers are gone: who the caller is, for agentk.
func (p *Proxy) addIdentity(out *http.Request, ri *reqInfo) {
	// This server has answered any "Expect: 100-continue" already; the
	// next hop gets the body at once.
	out.Header.Del("Expect")
	out.Header.Set(tunnel.HeaderProxyUser, ri.user.Name)
	for _, g := range ri.user.Groups {
		out.Header.Add(tunnel.HeaderProxyGroup, g)
	}
	if ri.peerIdentity != "" {
		out.Header.Set(tunnel.HeaderGitLabIdentity, ri.peerIdentity)
	}
	if ri.grant != nil {
		gitlabaccess.StripCredentials(out)
		if ri.grant.Identity == nil {
			out.Header.Set(tunnel.HeaderGitLabIdentity, tunnel.GitLabIdentityAgent)
		} else {
			out.Header.Set(tunnel.HeaderGitLabIdentity, ri.grant.Identity.HeaderValue())
		}
	}
	if p.cfg.Metrics != nil && out.Body != nil && out.Body != http.NoBody {
		out.Body = p.cfg.Metrics.countingBody(out.Body)
	}
}

// ParsePath splits /agents/<name>/<rest> into the agent and the API path.
func ParsePath(path string) (agent, rest string, ok bool) {
	after, found := strings.CutPrefix(path, "/agents/")
	if !found {
		return "", "", false
	}
	agent, rest, _ = strings.Cut(after, "/")
	if agent == "" || strings.ContainsAny(agent, "\x00%") {
		return "", "", false
	}
	return agent, "/" + rest, true
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	verb := Verb(r)
	ri := &reqInfo{verb: verb}
	kind := "static"
	// done records the request (metrics, the audit line) once. A proxied
	// answer is recorded before its final flush rather than after: work
	// left after the answer leaves races the caller's next request on
	// the connection, which then wakes net/http's background read
	// instead of finding the handler gone (kas's context switches per
	// GET 16.0 -> 15.3, docs/benchmarks.md, "The audit line before the
	// answer").
	recorded := false
	done := func() {
		if recorded {
			return
		}
		recorded = true
		d := time.Since(start)
		if p.cfg.Metrics != nil {
			p.cfg.Metrics.observe(verb, ri.status, d)
		}
		p.audit(r.Context(), ri, verb, kind, d)
	}
	defer done()
	fail := func(code int, msg string) {
		ri.status = code
		kubehttp.WriteStatus(w, r, code, msg)
	}
	client := p.clientAddr(r)
	// authFailed answers a failed authentication: 401, or 429 past the
	// burst of failures from this address.
	authFailed := func(msg string) {
		if !p.cfg.AuthFailures.Allow(client) {
			fail(http.StatusTooManyRequests, "too many failed authentications from this address; wait a minute")
			return
		}
		p.cfg.AuthFailures.Fail(client)
		fail(http.StatusUnauthorized, msg)
	}
	var agent, rest string
	gl := p.cfg.GitLab
	if gl != nil {
		if gl.CORS != nil {
			cw := &statusWriter{ResponseWriter: w}
			if gl.CORS.Handle(cw, r) {
				ri.status = cw.status
				return
			}
		}
		cred, err := gitlabaccess.ParseCredential(r)
		if !errors.Is(err, gitlabaccess.ErrNotGitLab) {
			kind = cred.Kind.String()
			if err == nil {
				ri.agent = strconv.FormatInt(cred.AgentID, 10)
				ri.rest, err = gl.apiPath(r.URL.Path)
				if err != nil {
					fail(http.StatusNotFound, err.Error())
					return
				}
				ri.grant, err = gl.Authorizer.Authorize(r.Context(), cred)
			}
			if err != nil {
				ri.err = err
				code := gitlabaccess.StatusCode(err)
				if code == http.StatusUnauthorized {
					w.Header().Set(gitlabaccess.HeaderUnauthorized, "true")
					authFailed(err.Error())
					return
				}
				fail(code, err.Error())
				return
			}
			g := ri.grant
			agent = strconv.FormatInt(g.AgentID, 10)
			name := "gitlab:user:" + g.Username
			if g.Kind == gitlabaccess.KindCIJob {
				name = "gitlab:ci_job:" + strconv.FormatInt(g.JobID, 10)
			}
			ri.user = &User{Name: name, Agents: []string{agent}}
			ri.agent, rest = agent, ri.rest
		}
	}
	if ri.grant == nil {
		var ok bool
		agent, rest, ok = ParsePath(r.URL.Path)
		ri.agent, ri.rest = agent, rest
		if !ok {
			if gl != nil {
				w.Header().Set(gitlabaccess.HeaderUnauthorized, "true")
				fail(http.StatusUnauthorized, "Unauthorized: GitLab callers send Authorization: Bearer ci:<agent id>:<CI_JOB_TOKEN> or pat:<agent id>:<token> (or GitLab's session cookie); kas users[] callers use <kas URL>/agents/<agent-name>/")
				return
			}
			fail(http.StatusNotFound, "kas serves the Kubernetes API at /agents/<agent-name>/: set the kubeconfig server to <kas URL>/agents/<agent-name> (with kubectl proxy, add --append-server-path; kubectl get --raw paths start with /agents/<agent-name>/)")
			return
		}
		// Authenticate first: a valid token always passes, however many
		// failures came from its address (one ingress or NAT address
		// carries many users). Only failures are counted and, past the
		// burst, answered 429 instead of 401.
		token, hasToken := bearerToken(r)
		var u User
		err := ErrUnauthenticated
		ra, fromPeer := p.cfg.Users.(RequestAuthenticator)
		if fromPeer && hasToken {
			u, err = ra.AuthenticateRequest(r, token)
			// Only a kas peer holds a token for this request: the
			// GitLab identity it sends was GitLab's answer there.
			if v := r.Header.Values(tunnel.HeaderGitLabIdentity); err == nil && len(v) == 1 {
				ri.peerIdentity = v[0]
			}
		} else if hasToken {
			u, err = p.cfg.Users.AuthenticateUser(r.Context(), token)
		}
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				ri.err = err
			}
			authFailed("Unauthorized: kas needs a valid user token (Authorization: Bearer <token>)")
			return
		}
		ri.user = &u
		// The same answer whether or not the agent exists.
		if !slices.Contains(u.Agents, agent) {
			fail(http.StatusForbidden, fmt.Sprintf("user %q may not use agent %q", u.Name, agent))
			return
		}
	}
	u := *ri.user
	if IsInternalPath(rest) {
		// agentk's own endpoints (GoAway) are for kas alone.
		fail(http.StatusNotFound, fmt.Sprintf("%s is not a Kubernetes API path: paths under %s are agentk's own, for kas alone", rest, tunnel.InternalPathPrefix))
		return
	}
	if h := kubehttp.ImpersonationHeader(r.Header); h != "" {
		fail(http.StatusForbidden, fmt.Sprintf("%s is not allowed through kas: the agent's user_access.access_as decides the identity of requests", h))
		return
	}
	if msg := p.acquire(agent, u.Name); msg != "" {
		fail(http.StatusTooManyRequests, msg)
		return
	}
	defer p.release(agent, u.Name)
	var err error
	ri.rt, err = p.cfg.Tunnels.RoundTripper(agent)
	if err != nil {
		ri.err = err
		switch {
		case errors.Is(err, ErrAgentNotConnected):
			w.Header().Set(HeaderAgentNotConnected, "1")
			fail(http.StatusServiceUnavailable, notConnected(agent))
		case errors.Is(err, ErrUnavailable):
			fail(http.StatusServiceUnavailable, err.Error())
		default:
			fail(http.StatusBadGateway, fmt.Sprintf("agent %q: %v", agent, err))
		}
		return
	}
	if p.cfg.Metrics != nil {
		p.cfg.Metrics.Inflight.Inc()
		defer p.cfg.Metrics.Inflight.Dec()
	}

	// From here on the response may be long (watches, logs -f, a large
	// list): a caller that stops reading must not hold kas's memory.
	w = p.guard(w, u.Name, ri)
	if p.cfg.Metrics != nil {
		w = p.cfg.Metrics.countingWriter(w)
	}
	var batch *batchWriter
	if batchable(r, verb, rest) {
		batch = newBatchWriter(w)
		defer batch.stop()
		w = batch
	}
	if isUpgrade(r.Header) {
		p.reverseProxy(w, r, ri)
	} else {
		p.forward(w, r, ri)
	}
	if batch != nil {
		batch.stop() // the flush below goes at once
	}
	// http.Server sends a small response only after the handler returns:
	// send it now, once it is recorded, so that the caller does not wait
	// for the deferred calls. 1xx: the connection was hijacked; 499:
	// nothing was written.
	if ri.status >= 200 && ri.status != 499 {
		done()
		_ = http.NewResponseController(w).Flush()
	}
}

// audit writes the request's audit line. It hands the record to the
// handler itself, as slog.Logger.Info would but without the caller's
// program counter (no source is logged) and with typed attributes: the
// line is written for every request.
func (p *Proxy) audit(ctx context.Context, ri *reqInfo, verb, kind string, d time.Duration) {
	h := p.cfg.Logger.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	user := ""
	if ri.user != nil {
		user = ri.user.Name
	}
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "Proxied request", 0)
	rec.AddAttrs(slog.String("user", user), slog.String("agent", ri.agent), slog.String("verb", verb),
		slog.String("path", ri.rest), slog.Int("status", ri.status), slog.Duration("duration", d), slog.String("kind", kind))
	if g := ri.grant; g != nil {
		rec.AddAttrs(slog.String("gitlab_user", g.Username), slog.Int64("agent_id", g.AgentID))
		if g.JobID != 0 {
			rec.AddAttrs(slog.Int64("job", g.JobID), slog.Int64("project_id", g.ProjectID))
		}
	}
	if ri.err != nil {
		rec.AddAttrs(slog.Any("err", ri.err))
	}
	_ = h.Handle(ctx, rec)
}

// IsInternalPath reports whether an API path (already percent-decoded)
// reaches agentk's own endpoints, however it is spelled ("//-/", "/./-/").
func IsInternalPath(rest string) bool {
	c := path.Clean("/" + rest)
	return c == strings.TrimSuffix(tunnel.InternalPathPrefix, "/") || strings.HasPrefix(c, tunnel.InternalPathPrefix)
}

// fail answers a request the agent did not answer.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, ri *reqInfo, err error) {
	ri.err = err
	agent := ri.agent
	switch {
	case errors.Is(err, errShuttingDown):
		ri.status = http.StatusServiceUnavailable
		kubehttp.WriteStatus(w, r, ri.status, "kas is shutting down: retry")
	case errors.Is(err, ErrAgentNotConnected):
		ri.status = http.StatusServiceUnavailable
		w.Header().Set(HeaderAgentNotConnected, "1")
		kubehttp.WriteStatus(w, r, ri.status, notConnected(agent))
	case errors.Is(err, ErrUnavailable):
		ri.status = http.StatusServiceUnavailable
		kubehttp.WriteStatus(w, r, ri.status, err.Error())
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The caller went away: nothing to answer; 499 as nginx logs it.
		ri.status = 499
	default:
		ri.status = http.StatusBadGateway
		kubehttp.WriteStatus(w, r, ri.status, fmt.Sprintf("request to agent %q failed: %v", agent, err))
	}
}

func notConnected(agent string) string {
	return fmt.Sprintf("agent %q is not connected to kas: check that agentk is running and can reach kas", agent)
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// clientAddr is the address failed authentications are counted against:
// the TCP peer, or, when the peer is one of TrustedProxies, the last
// X-Forwarded-For entry that is not a trusted proxy (the address the
// outermost trusted proxy saw; entries left of it could be forged).
func (p *Proxy) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(p.cfg.TrustedProxies) == 0 || !p.trusted(host) {
		return host
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for h := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(hops[i])
		if err != nil {
			// Not an address: what the proxy saw cannot be known; count
			// against the proxy's own entry rather than a forged one.
			return host
		}
		if !p.trusted(ip.String()) {
			return ip.Unmap().String()
		}
	}
	return host
}

func (p *Proxy) trusted(host string) bool {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, pr := range p.cfg.TrustedProxies {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

// GitLabAccess serves GitLab's callers: CI jobs with the kubeconfig GitLab
// injects, users with a personal access token or GitLab's session cookie.
// The agent comes from the credential, not the path.
type GitLabAccess struct {
	Authorizer interface {
		Authorize(ctx context.Context, c gitlabaccess.Credential) (*gitlabaccess.Grant, error)
	}
	// CORS answers browsers (GitLab's UI at gitlab.external_url); nil
	// refuses no origin and answers no preflight.
	CORS *gitlabaccess.CORS
	// PathPrefix is agent.kubernetes_api.url_path_prefix ("/" when empty).
	PathPrefix string
}

// apiPath is the Kubernetes API path of a GitLab caller's request.
func (g *GitLabAccess) apiPath(p string) (string, error) {
	prefix := "/" + strings.Trim(g.PathPrefix, "/")
	if prefix == "/" {
		return p, nil
	}
	if p == prefix {
		return "/", nil
	}
	rest, ok := strings.CutPrefix(p, prefix+"/")
	if !ok {
		return "", fmt.Errorf("kas serves GitLab's callers under %s/ (agent.kubernetes_api.url_path_prefix)", prefix)
	}
	return "/" + rest, nil
}

// statusWriter remembers the status written, for the audit line.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
