package kas

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"kubetunnel/internal/gitlab"
)

// gitlabRegistry is the agent registry backed by GitLab's agent_info.
// Agents it has seen since kas started are remembered (for the status API
// and for project_info with a token GitLab accepted); a known agent keeps
// being accepted from its last good answer while GitLab is down.
type gitlabRegistry struct {
	client *gitlab.Client
	logger *slog.Logger

	mu    sync.Mutex       // guards known and tokens
	known map[string]Agent // by key
	// tokens are the tokens GitLab accepted per agent key, newest first:
	// kas asks project_info with them. A refused one is forgotten.
	tokens map[string][]string
	// refused holds the agents a token of which was forgotten (GitLab
	// refused it) since revalidate last looked: their connections close.
	refused map[string]bool
}

// maxTokensPerAgent bounds the tokens remembered per agent.
const maxTokensPerAgent = 8

var _ tokenRegistry = (*gitlabRegistry)(nil)

// tokenRegistry is a registry that keeps the tokens its agents
// authenticated with (GitLab's): kas asks project_info with them, and asks
// about them again periodically (revalidate).
type tokenRegistry interface {
	AgentRegistry
	// tokensOf returns the tokens accepted for agent key, newest first.
	tokensOf(key string) []string
	// forget drops a token that is no longer accepted.
	forget(key, token string)
	// revalidate asks about the tokens of connected agents every period
	// and revokes the sessions of agents with a refused one.
	revalidate(ctx context.Context, period time.Duration, sessions agentSessions) error
}

func newGitLabRegistry(client *gitlab.Client, logger *slog.Logger) *gitlabRegistry {
	return &gitlabRegistry{client: client, logger: logger, known: map[string]Agent{}, tokens: map[string][]string{}, refused: map[string]bool{}}
}

func agentFromInfo(info *gitlab.AgentInfo) Agent {
	return Agent{
		Key:             strconv.FormatInt(int64(info.AgentID), 10),
		Name:            info.AgentName,
		ID:              int64(info.AgentID),
		ConfigProject:   info.ConfigProject(),
		ConfigProjectID: int64(info.ProjectID),
	}
}

func (r *gitlabRegistry) AuthenticateAgent(ctx context.Context, token string) (Agent, error) {
	res, err := r.client.GetAgentInfo(ctx, token)
	switch {
	case err == nil || res.Stale:
		a := agentFromInfo(res.AgentInfo)
		if res.Stale {
			r.logger.Warn("GitLab is unavailable: accepting a known agent from its last good agent_info", append(a.LogAttrs(), "err", err)...)
		}
		r.mu.Lock()
		r.known[a.Key] = a
		toks := slices.DeleteFunc(r.tokens[a.Key], func(t string) bool { return t == token })
		r.tokens[a.Key] = append([]string{token}, toks[:min(len(toks), maxTokensPerAgent-1)]...)
		r.mu.Unlock()
		return a, nil
	case gitlab.IsRefusal(err):
		// 401/403/404 alike: the caller must not learn whether the agent
		// exists.
		return Agent{}, ErrUnknownToken
	default:
		r.logger.Warn("New agent connection waits: GitLab is unavailable, so kas cannot check its token (the agent retries)", "err", err)
		return Agent{}, errors.Join(ErrRegistryUnavailable, err)
	}
}

// tokensOf returns the tokens GitLab accepted for agent key, newest first.
func (r *gitlabRegistry) tokensOf(key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.tokens[key])
}

// forget drops a token GitLab no longer accepts.
func (r *gitlabRegistry) forget(key, token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.tokens[key])
	r.tokens[key] = slices.DeleteFunc(r.tokens[key], func(t string) bool { return t == token })
	if len(r.tokens[key]) < n {
		r.refused[key] = true
	}
}

// takeRefused reports whether a token of agent key was forgotten since
// the last call, and clears that.
func (r *gitlabRegistry) takeRefused(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok := r.refused[key]
	delete(r.refused, key)
	return ok
}

// markRefused keeps agent key's refusal for the next revalidation.
func (r *gitlabRegistry) markRefused(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused[key] = true
}

func (r *gitlabRegistry) Agent(key string) (Agent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.known[key]
	return a, ok
}

func (r *gitlabRegistry) Agents() []Agent {
	r.mu.Lock()
	list := make([]Agent, 0, len(r.known))
	for _, a := range r.known {
		list = append(list, a)
	}
	r.mu.Unlock()
	slices.SortFunc(list, func(a, b Agent) int { return cmp.Compare(a.ID, b.ID) })
	return list
}

// newRegistry returns the agent registry the config asks for, and the
// GitLab client when it is GitLab's.
func newRegistry(cfg *Config, logger *slog.Logger) (AgentRegistry, *gitlab.Client, error) {
	if cfg.GitLab == nil {
		return newStaticRegistry(cfg), nil, nil
	}
	c, err := NewGitLabClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return newGitLabRegistry(c, logger), c, nil
}

// NewGitLabClient builds the GitLab client from gitlab: (the secret and CA
// files are read now, so a bad file stops kas at start). kas check probes
// GitLab with the same client.
func NewGitLabClient(cfg *Config) (*gitlab.Client, error) {
	g := cfg.GitLab
	u, err := url.Parse(g.Address)
	if err != nil {
		return nil, fmt.Errorf("gitlab.address: %w", err)
	}
	secret, err := gitlab.ReadSecretFile(g.AuthenticationSecretFile)
	if err != nil {
		return nil, fmt.Errorf("gitlab.authentication_secret_file: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if g.CACertificateFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(g.CACertificateFile)
		if err != nil {
			return nil, fmt.Errorf("gitlab.ca_certificate_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("gitlab.ca_certificate_file: %s holds no PEM certificate", g.CACertificateFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return gitlab.New(gitlab.Config{
		Address:           u,
		Secret:            secret,
		HTTPClient:        &http.Client{Transport: tr},
		InfoCacheTTL:      cfg.Agent.InfoCacheTTL,
		InfoCacheErrorTTL: cfg.Agent.InfoCacheErrorTTL,
	})
}
