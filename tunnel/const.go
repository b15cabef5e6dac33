package tunnel

import (
	"errors"
	"time"
)

// Protocol versions this build speaks. kas accepts agents that offer a
// protocol within [MinProtocol, MaxProtocol] and uses the highest one both
// speak; bump MaxProtocol for a compatible extension and MinProtocol when
// old agents can no longer be served. Protocol 1 carries proxied requests
// as HTTP/1.1 on the streams kas opens; protocol 2 as head frames
// (tunnel/wire).
const (
	MinProtocol = 1
	MaxProtocol = 2
)

// Handshake headers on the WebSocket upgrade request. For raw TCP the same
// fields travel in the hello frame (see frame.go).
const (
	HeaderProtocol     = "Kas-Tunnel-Protocol"
	HeaderProtocols    = "Kas-Tunnel-Protocols" // "1,2": every protocol the agent speaks
	HeaderAgentVersion = "Kas-Agentk-Version"
)

// Defaults for the session; every one can be overridden in Config.
const (
	DefaultKeepAliveInterval  = 10 * time.Second
	DefaultKeepAliveTimeout   = 10 * time.Second
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultMaxStreamWindow    = 16 << 20 // 16 MiB: see SessionConfig.MaxStreamWindow
	DefaultAcceptBacklog      = 256
	DefaultStreamCloseTimeout = 5 * time.Minute
	// DefaultBackoffReset is how long a connection must have stayed up for
	// the reconnect backoff to start again from its initial wait.
	DefaultBackoffReset = 10 * time.Second
	// DefaultBackoffMax caps agentk's reconnect wait (see Backoff.Max).
	DefaultBackoffMax = 10 * time.Second
	// MaxHelloSize bounds the raw-TCP hello frame so that a peer cannot make
	// kas buffer arbitrary amounts of data before it has authenticated.
	MaxHelloSize = 8 << 10
)

// Errors callers branch on.
var (
	// ErrMalformedHandshake is a hello that cannot be parsed.
	ErrMalformedHandshake = errors.New("malformed handshake")
	// ErrHelloTooLarge is a raw hello frame over MaxHelloSize.
	ErrHelloTooLarge = errors.New("handshake frame too large")
	// ErrUnsupportedScheme is a kas address whose scheme is not ws, wss, grpc or grpcs.
	ErrUnsupportedScheme = errors.New("unsupported kas address scheme")
)

// GoAwayPath is the HTTP request kas sends agentk over a new stream before
// it stops taking streams on a session (yamux GoAway has no callback on
// the receiving side). agentk answers 204 and dials a new connection at
// once, while the old session drains.
const GoAwayPath = "/-/tunnel/goaway"

// InternalPathPrefix starts every path of agentk's own endpoints, which
// only kas itself calls (GoAwayPath). kas refuses proxied requests whose
// path starts with it: no Kubernetes API path does.
const InternalPathPrefix = "/-/"

// HeaderInternal marks a request kas itself sends agentk (GoAway), as
// opposed to a proxied caller's; its value is InternalGoAway. kas removes
// every Kas-* header a caller sends, so only kas can set it, and agentk
// answers its internal endpoints only with it.
const (
	HeaderInternal = "Kas-Internal"
	InternalGoAway = "goaway"
)

// Headers kas sets on every proxied request it sends agentk, after
// removing any a caller sent: they say who the caller is, so agentk can
// impersonate them (user_access.access_as: user) and apply its own policy.
const (
	HeaderProxyUser  = "Kas-Proxy-User"
	HeaderProxyGroup = "Kas-Proxy-Group" // repeated, one per group
	// HeaderGitLabIdentity is set for callers GitLab admitted (CI jobs,
	// users): GitLabIdentityAgent (act as the agent) or the identity agentk
	// impersonates, encoded by gitlabaccess.Identity.HeaderValue.
	HeaderGitLabIdentity = "Kas-Gitlab-Identity"
	GitLabIdentityAgent  = "agent"
)
