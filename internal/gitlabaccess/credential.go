package gitlabaccess

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"kubetunnel/internal/gitlab"
)

// Names GitLab and its clients use on the Kubernetes API listener
// (upstream: internal/tool/httpz/tools.go and
// internal/module/kubernetes_api/server/proxy.go, GitLab 16.3).
const (
	// CookieName is GitLab's session cookie for kas, set by GitLab's UI
	// for the Kubernetes dashboard.
	CookieName = "_gitlab_kas"
	// HeaderAgentID names the agent a session cookie request is for.
	HeaderAgentID = "Gitlab-Agent-Id"
	// QueryAgentID is HeaderAgentID's query parameter form (browsers
	// cannot set headers on WebSocket requests).
	QueryAgentID = "gitlab-agent-id"
	// HeaderCSRFToken carries the CSRF token GitLab checks with the cookie.
	HeaderCSRFToken = "X-Csrf-Token"
	// QueryCSRFToken is HeaderCSRFToken's query parameter form.
	QueryCSRFToken = "gitlab-csrf-token"

	// bearerPrefix is matched case-insensitively (RFC 9110 11.1);
	// upstream matches "Bearer " exactly, which this accepts too.
	bearerPrefix = "bearer "
	prefixCI     = "ci:"
	prefixPAT    = "pat:"

	// maxTokenLen bounds a token, cookie or CSRF token: GitLab's are far
	// shorter, and each one is hashed for the cache.
	maxTokenLen = 4096
)

// Kind is how a GitLab caller proved who it is.
type Kind int

// Kinds of GitLab credential.
const (
	// KindCIJob is Authorization: Bearer ci:<agent id>:<CI_JOB_TOKEN>.
	KindCIJob Kind = iota + 1
	// KindPAT is Authorization: Bearer pat:<agent id>:<personal access token>.
	KindPAT
	// KindSessionCookie is the _gitlab_kas cookie with Gitlab-Agent-Id
	// and X-Csrf-Token (or their query parameters).
	KindSessionCookie
)

// String is the kind's name in logs and audit lines.
func (k Kind) String() string {
	switch k {
	case KindCIJob:
		return "ci"
	case KindPAT:
		return "pat"
	case KindSessionCookie:
		return "cookie"
	default:
		return "unknown"
	}
}

// AccessType is the access_type authorize_proxy_user expects for k, ""
// for KindCIJob (which uses allowed_agents).
func (k Kind) AccessType() string {
	switch k {
	case KindPAT:
		return gitlab.AccessTypePersonalAccessToken
	case KindSessionCookie:
		return gitlab.AccessTypeSessionCookie
	default:
		return ""
	}
}

// Credential is a GitLab caller's credential, parsed but not checked.
// Its secrets are never printed: String shows the kind and agent only.
type Credential struct {
	Kind    Kind
	AgentID int64
	// Token is the CI job token, the personal access token, or the
	// session cookie's value (URL-unescaped, as GitLab expects it).
	Token string
	// CSRFToken is set for KindSessionCookie only.
	CSRFToken string
}

// String names the credential without its secrets.
func (c Credential) String() string {
	return fmt.Sprintf("%s credential for agent %d", c.Kind, c.AgentID)
}

// GoString keeps %#v from printing the secrets too.
func (c Credential) GoString() string { return c.String() }

// ParseCredential finds a GitLab credential in r.
//
// It returns an error wrapping ErrNotGitLab when r carries none (the
// caller falls through to its other authentication, such as kas's static
// users), and one wrapping ErrMalformed when r carries something shaped
// like a GitLab credential that cannot be used (answer 401).
//
// The Authorization header decides when present: "Bearer ci:…" and
// "Bearer pat:…" are GitLab's, any other value is not (even with a
// _gitlab_kas cookie beside it, which is then ignored and stripped before
// forwarding). Without Authorization, a _gitlab_kas cookie is GitLab's,
// and needs the agent id and the CSRF token, each from its header or,
// when the header is absent, its query parameter (header first, as
// upstream). Tokens beginning with ci: or pat: are therefore reserved for
// GitLab: a static token must not start with them.
func ParseCredential(r *http.Request) (Credential, error) {
	if auth, ok := headerValues(r.Header, "Authorization"); ok {
		gl := false
		for _, v := range auth {
			if isGitLabBearer(v) {
				gl = true
			}
		}
		if !gl {
			return Credential{}, ErrNotGitLab
		}
		if len(auth) != 1 {
			return Credential{}, fmt.Errorf("%w: %d Authorization headers, GitLab's token needs exactly one", ErrMalformed, len(auth))
		}
		return ParseAuthorization(auth[0])
	}
	var cookies []*http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == CookieName {
			cookies = append(cookies, c)
		}
	}
	switch len(cookies) {
	case 0:
		return Credential{}, ErrNotGitLab
	case 1:
	default:
		return Credential{}, fmt.Errorf("%w: %d %s cookies, expected one", ErrMalformed, len(cookies), CookieName)
	}
	return parseSessionCookie(cookies[0].Value, r)
}

// headerValues returns every value of the header named key in any letter
// case: a key ParseCredential does not see must not slip past it to the
// cluster either.
func headerValues(h http.Header, key string) ([]string, bool) {
	var vals []string
	found := false
	for k, v := range h {
		if strings.EqualFold(k, key) {
			found = true
			vals = append(vals, v...)
		}
	}
	return vals, found
}

func isGitLabBearer(v string) bool {
	if len(v) < len(bearerPrefix) || !strings.EqualFold(v[:len(bearerPrefix)], bearerPrefix) {
		return false
	}
	t := v[len(bearerPrefix):]
	return strings.HasPrefix(t, prefixCI) || strings.HasPrefix(t, prefixPAT)
}

// ParseAuthorization parses one Authorization header value. A value that
// is not "Bearer ci:…" or "Bearer pat:…" is ErrNotGitLab; a GitLab one
// with a bad agent id or token is ErrMalformed.
func ParseAuthorization(v string) (Credential, error) {
	if !isGitLabBearer(v) {
		return Credential{}, ErrNotGitLab
	}
	t := v[len(bearerPrefix):]
	c := Credential{Kind: KindCIJob}
	if strings.HasPrefix(t, prefixPAT) {
		c.Kind = KindPAT
	}
	_, rest, _ := strings.Cut(t, ":")
	id, tok, found := strings.Cut(rest, ":")
	if !found {
		return Credential{}, fmt.Errorf("%w: Authorization: expected Bearer %s<agent id>:<token>", ErrMalformed, t[:strings.IndexByte(t, ':')+1])
	}
	agentID, err := ParseAgentID(id)
	if err != nil {
		return Credential{}, fmt.Errorf("Authorization: %w", err)
	}
	if err := checkToken("Authorization: token", tok); err != nil {
		return Credential{}, err
	}
	c.AgentID, c.Token = agentID, tok
	return c, nil
}

// ParseAgentID parses a GitLab agent id: a positive decimal integer, no
// sign, no spaces. The error does not quote s: in a mangled header it may
// be part of a token.
func ParseAgentID(s string) (int64, error) {
	bad := fmt.Errorf("%w: agent id (%d bytes) is not a positive integer", ErrMalformed, len(s))
	if s == "" || len(s) > 19 {
		return 0, bad
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, bad
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, bad
	}
	return id, nil
}

// checkToken refuses empty, oversized tokens and ones with spaces or
// control bytes (no GitLab token has them; a space usually means a
// mangled header).
func checkToken(what, tok string) error {
	if tok == "" {
		return fmt.Errorf("%w: %s is empty", ErrMalformed, what)
	}
	if len(tok) > maxTokenLen {
		return fmt.Errorf("%w: %s is over %d bytes", ErrMalformed, what, maxTokenLen)
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] == 0x7f {
			return fmt.Errorf("%w: %s has a space or control character", ErrMalformed, what)
		}
	}
	return nil
}

// truncate shortens what an error message quotes from the request.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

func parseSessionCookie(raw string, r *http.Request) (Credential, error) {
	// GitLab's Rails (rack) URL-escapes cookie values; GitLab expects
	// the unescaped value back (upstream does the same).
	val, err := url.QueryUnescape(raw)
	if err != nil {
		return Credential{}, fmt.Errorf("%w: %s cookie is not URL-escaped correctly", ErrMalformed, CookieName)
	}
	if err := checkToken(CookieName+" cookie", val); err != nil {
		return Credential{}, err
	}
	q := r.URL.Query()
	id, err := headerOrQuery(r.Header, HeaderAgentID, q, QueryAgentID)
	if err != nil {
		return Credential{}, err
	}
	agentID, err := ParseAgentID(id)
	if err != nil {
		return Credential{}, fmt.Errorf("%s: %w", HeaderAgentID, err)
	}
	csrf, err := headerOrQuery(r.Header, HeaderCSRFToken, q, QueryCSRFToken)
	if err != nil {
		return Credential{}, err
	}
	if err := checkToken("CSRF token", csrf); err != nil {
		return Credential{}, err
	}
	return Credential{Kind: KindSessionCookie, AgentID: agentID, Token: val, CSRFToken: csrf}, nil
}

// headerOrQuery returns the one value of header, or when it is absent,
// the one value of the query parameter.
func headerOrQuery(h http.Header, header string, q url.Values, param string) (string, error) {
	if v, ok := headerValues(h, header); ok {
		if len(v) != 1 {
			return "", fmt.Errorf("%w: %d %s headers, expected one", ErrMalformed, len(v), header)
		}
		return v[0], nil
	}
	v := q[param]
	if len(v) != 1 {
		return "", fmt.Errorf("%w: a %s cookie needs exactly one %s header or %s query parameter, found %d", ErrMalformed, CookieName, header, param, len(v))
	}
	return v[0], nil
}
