package gitlab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Errors a caller branches on. GitLab's refusals (401, 403, 404) are
// answers; ErrUnavailable means GitLab gave none that kas can use.
var (
	// ErrUnauthorized: GitLab refused the credential (401), e.g. an agent
	// token that is unknown or revoked, or kas's JWT.
	ErrUnauthorized = errors.New("GitLab refused the credential (401)")
	// ErrForbidden: the credential is valid but may not do this (403).
	ErrForbidden = errors.New("GitLab refused access (403)")
	// ErrNotFound: no such thing, or not visible to the credential (404).
	ErrNotFound = errors.New("GitLab answered not found (404)")
	// ErrUnavailable: no usable answer (network error, 5xx, bad body).
	ErrUnavailable = errors.New("GitLab is unavailable")
)

// IsRefusal reports whether err is one of GitLab's refusals (401, 403,
// 404) as opposed to an outage.
func IsRefusal(err error) bool {
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound)
}

// API paths, relative to Config.Address.
const (
	PathAgentInfo          = "/api/v4/internal/kubernetes/agent_info"
	PathProjectInfo        = "/api/v4/internal/kubernetes/project_info"
	PathAgentConfiguration = "/api/v4/internal/kubernetes/agent_configuration"
	PathUsageMetrics       = "/api/v4/internal/kubernetes/usage_metrics"
)

// Defaults.
const (
	DefaultInfoCacheTTL      = 300 * time.Second
	DefaultInfoCacheErrorTTL = 60 * time.Second
	DefaultTimeout           = 10 * time.Second
	// DefaultMaxCacheEntries bounds each cache: random tokens must not
	// grow kas's memory without limit.
	DefaultMaxCacheEntries = 10000
	// maxResponseBytes bounds what kas reads of an answer.
	maxResponseBytes = 1 << 20
)

// Config configures a Client. Zero values mean the defaults.
type Config struct {
	// Address is GitLab's base URL (https://gitlab.example.com).
	Address *url.URL
	// Secret is the decoded shared secret that signs the JWT.
	Secret []byte
	// HTTPClient makes the calls (TLS settings live there).
	HTTPClient *http.Client
	// InfoCacheTTL is how long a good agent_info / project_info is trusted.
	InfoCacheTTL time.Duration
	// InfoCacheErrorTTL is how long a refusal is remembered.
	InfoCacheErrorTTL time.Duration
	// Timeout bounds each call.
	Timeout         time.Duration
	MaxCacheEntries int
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// Client calls GitLab's internal Kubernetes agent API. Safe for
// concurrent use.
type Client struct {
	cfg         Config
	agentInfo   *cache[*AgentInfo]
	projectInfo *cache[*ProjectInfo]
}

// New returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.Address == nil || cfg.Address.Host == "" {
		return nil, errors.New("gitlab client: no address")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("gitlab client: no secret")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.InfoCacheTTL == 0 {
		cfg.InfoCacheTTL = DefaultInfoCacheTTL
	}
	if cfg.InfoCacheErrorTTL == 0 {
		cfg.InfoCacheErrorTTL = DefaultInfoCacheErrorTTL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxCacheEntries == 0 {
		cfg.MaxCacheEntries = DefaultMaxCacheEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Client{cfg: cfg}
	c.agentInfo = newCache[*AgentInfo](cfg.MaxCacheEntries, cfg.Now)
	c.projectInfo = newCache[*ProjectInfo](cfg.MaxCacheEntries, cfg.Now)
	return c, nil
}

// AgentInfoResult is GetAgentInfo's answer with how it was obtained.
type AgentInfoResult struct {
	*AgentInfo
	// Stale is set when GitLab is unavailable and the answer is the last
	// good one, kept past its TTL.
	Stale bool
}

// GetAgentInfo asks GitLab which agent owns token. Good answers are
// cached for InfoCacheTTL, refusals for InfoCacheErrorTTL, keyed by the
// token's SHA-256. When GitLab is unavailable and an expired good answer
// is known, that answer is returned with Stale set: an outage must not
// lock out agents GitLab vouched for.
func (c *Client) GetAgentInfo(ctx context.Context, token string) (AgentInfoResult, error) {
	key := tokenKey(token, "")
	v, err, ok, stale := c.agentInfo.get(key)
	if ok {
		return AgentInfoResult{AgentInfo: v}, err
	}
	body, err := c.do(ctx, http.MethodGet, PathAgentInfo, nil, token, nil)
	var info *AgentInfo
	if err == nil {
		info, err = ParseAgentInfo(body)
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	switch {
	case err == nil:
		c.agentInfo.put(key, info, nil, c.cfg.InfoCacheTTL)
		return AgentInfoResult{AgentInfo: info}, nil
	case IsRefusal(err):
		c.agentInfo.put(key, nil, err, c.cfg.InfoCacheErrorTTL)
		return AgentInfoResult{}, err
	case stale != nil:
		return AgentInfoResult{AgentInfo: stale, Stale: true}, err
	default:
		return AgentInfoResult{}, err
	}
}

// GetProjectInfo asks GitLab whether the agent with token may read
// project (a full path or a numeric id). Cached as GetAgentInfo, keyed by
// the token's hash and the project; when GitLab is unavailable the last
// good answer is returned with a non-nil error wrapping ErrUnavailable.
func (c *Client) GetProjectInfo(ctx context.Context, token, project string) (*ProjectInfo, error) {
	key := tokenKey(token, project)
	v, err, ok, stale := c.projectInfo.get(key)
	if ok {
		return v, err
	}
	q := url.Values{"id": {project}}
	body, err := c.do(ctx, http.MethodGet, PathProjectInfo, q, token, nil)
	var info *ProjectInfo
	if err == nil {
		info, err = ParseProjectInfo(body)
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	switch {
	case err == nil:
		c.projectInfo.put(key, info, nil, c.cfg.InfoCacheTTL)
		return info, nil
	case IsRefusal(err):
		c.projectInfo.put(key, nil, err, c.cfg.InfoCacheErrorTTL)
		return nil, err
	default:
		return stale, err
	}
}

// PostAgentConfiguration tells GitLab an agent's current config.
func (c *Client) PostAgentConfiguration(ctx context.Context, agentID int64, config json.RawMessage) error {
	body, err := json.Marshal(AgentConfiguration{AgentID: agentID, AgentConfig: config})
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodPost, PathAgentConfiguration, nil, "", body)
	return err
}

// SendUsage posts usage counters. An empty report is not sent.
func (c *Client) SendUsage(ctx context.Context, u *UsageData) error {
	if u.IsEmpty() {
		return nil
	}
	body, err := json.Marshal(u)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodPost, PathUsageMetrics, nil, "", body)
	return err
}

// do makes one call with kas's JWT (and the agent's token, if any).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, agentToken string, body []byte) ([]byte, error) {
	var hdr http.Header
	if agentToken != "" {
		hdr = http.Header{"Authorization": {"Bearer " + agentToken}}
	}
	return c.doWith(ctx, method, path, q, hdr, body, true)
}

// doWith makes one call and maps its status to the package's errors.
func (c *Client) doWith(ctx context.Context, method, path string, q url.Values, hdr http.Header, body []byte, withJWT bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	u := *c.cfg.Address
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if withJWT {
		req.Header.Set(HeaderKasAPIRequest, SignJWT(c.cfg.Secret, IssuerKas, AudienceGitLab, c.cfg.Now()))
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		// The URL in err carries no secret: the token is a header.
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUnavailable, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: reading answer: %w", ErrUnavailable, method, path, err)
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("%w: %s %s: answer over %d bytes", ErrUnavailable, method, path, maxResponseBytes)
	}
	switch {
	case resp.StatusCode/100 == 2:
		return data, nil
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%s %s: %w", method, path, ErrUnauthorized)
	case resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%s %s: %w", method, path, ErrForbidden)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s %s: %w", method, path, ErrNotFound)
	case resp.StatusCode == http.StatusBadRequest:
		return nil, fmt.Errorf("%w: %w: %s %s answered %s", ErrUnavailable, errBadRequest, method, path, resp.Status)
	default:
		return nil, fmt.Errorf("%w: %s %s answered %s", ErrUnavailable, method, path, resp.Status)
	}
}

// errBadRequest is a 400: GitLab accepted the JWT (it checks it first)
// but not the request.
var errBadRequest = errors.New("bad request")

// ProbeJWT checks that GitLab answers and accepts kas's JWT, with a call
// that needs the JWT and no other credential: an empty usage_metrics
// report. GitLab checks the JWT before it reads the body, so 401 is the
// JWT refused (ErrUnauthorized: gitlab.authentication_secret_file is not
// GitLab's secret), while 204 (an empty report counts nothing) or 400 (a
// GitLab that wants other fields) is the JWT accepted. agent_info without
// an agent token cannot tell the two apart: GitLab answers 401 to both.
func (c *Client) ProbeJWT(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPost, PathUsageMetrics, nil, "", []byte("{}"))
	if errors.Is(err, errBadRequest) {
		return nil
	}
	return err
}

// tokenKey is a cache key: the SHA-256 of the token (never the token
// itself) and an optional qualifier.
func tokenKey(token, qualifier string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(token))
	h.Write([]byte{0})
	h.Write([]byte(qualifier))
	return [sha256.Size]byte(h.Sum(nil))
}

// cache holds answers until they expire; expired good answers stay
// (stale) for outages until evicted.
type cache[T any] struct {
	max int
	now func() time.Time

	mu      sync.Mutex // guards entries
	entries map[[sha256.Size]byte]cacheEntry[T]
}

type cacheEntry[T any] struct {
	val     T
	err     error
	expires time.Time
}

func newCache[T any](max int, now func() time.Time) *cache[T] {
	return &cache[T]{max: max, now: now, entries: map[[sha256.Size]byte]cacheEntry[T]{}}
}

// get returns a fresh entry (ok), or the value of an expired good entry
// (stale) for use when GitLab cannot answer.
func (c *cache[T]) get(key [sha256.Size]byte) (val T, err error, ok bool, stale T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.entries[key]
	if !found {
		return val, nil, false, stale
	}
	if c.now().Before(e.expires) {
		return e.val, e.err, true, stale
	}
	if e.err == nil {
		return val, nil, false, e.val
	}
	delete(c.entries, key)
	return val, nil, false, stale
}

func (c *cache[T]) put(key [sha256.Size]byte, val T, err error, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, found := c.entries[key]; !found && len(c.entries) >= c.max {
		c.evictLocked()
	}
	c.entries[key] = cacheEntry[T]{val: val, err: err, expires: c.now().Add(ttl)}
}

// evictLocked makes room: expired refusals first, then expired good
// answers, then any entry.
func (c *cache[T]) evictLocked() {
	now := c.now()
	for k, e := range c.entries {
		if e.err != nil && !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k, e := range c.entries {
		if len(c.entries) < c.max {
			return
		}
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.max {
			return
		}
		delete(c.entries, k)
	}
}

// Len is the number of cached agent_info and project_info entries.
func (c *Client) Len() int {
	c.agentInfo.mu.Lock()
	n := len(c.agentInfo.entries)
	c.agentInfo.mu.Unlock()
	c.projectInfo.mu.Lock()
	defer c.projectInfo.mu.Unlock()
	return n + len(c.projectInfo.entries)
}
