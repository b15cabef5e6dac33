package gitlabaccess

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kubetunnel/internal/gitlab"
)

// Defaults, as upstream's agent.kubernetes_api.allowed_agent_cache_ttl
// and allowed_agent_cache_error_ttl (kubernetes_api/server/defaulting.go),
// which upstream uses for both allowed_agents and authorize_proxy_user.
const (
	DefaultCacheTTL      = 60 * time.Second
	DefaultCacheErrorTTL = 10 * time.Second
	// DefaultMaxCacheEntries bounds each of the two caches.
	DefaultMaxCacheEntries = 10000
)

// GitLab is the part of GitLab's API the Authorizer calls;
// *gitlab.Client implements it.
type GitLab interface {
	GetAllowedAgentsForJob(ctx context.Context, jobToken string) (*gitlab.AllowedAgentsForJob, error)
	AuthorizeProxyUser(ctx context.Context, req gitlab.AuthorizeProxyUserRequest) (*gitlab.AuthorizeProxyUserResponse, error)
}

var _ GitLab = (*gitlab.Client)(nil)

// Config configures an Authorizer. Zero values mean the defaults.
type Config struct {
	GitLab GitLab
	// CacheTTL is how long GitLab's yes is trusted. A revoked PAT or a
	// finished job keeps working this long at most: answers are not used
	// past it, even when GitLab is down.
	CacheTTL time.Duration
	// CacheErrorTTL is how long GitLab's refusal (401, 403, 404) is
	// remembered. Outages are not remembered.
	CacheErrorTTL   time.Duration
	MaxCacheEntries int
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// Validate checks the settings.
func (c *Config) Validate() error {
	switch {
	case c.GitLab == nil:
		return errors.New("gitlabaccess: no GitLab client")
	case c.CacheTTL < 0:
		return fmt.Errorf("cache TTL %s is negative", c.CacheTTL)
	case c.CacheErrorTTL < 0:
		return fmt.Errorf("cache error TTL %s is negative", c.CacheErrorTTL)
	case c.MaxCacheEntries < 0:
		return fmt.Errorf("max cache entries %d is negative", c.MaxCacheEntries)
	}
	return nil
}

// Authorizer asks GitLab whether a credential may use an agent, and as
// whom. Safe for concurrent use.
type Authorizer struct {
	cfg   Config
	jobs  *cache[*gitlab.AllowedAgentsForJob]
	users *cache[*gitlab.AuthorizeProxyUserResponse]
}

// NewAuthorizer returns an Authorizer.
func NewAuthorizer(cfg Config) (*Authorizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.CacheErrorTTL == 0 {
		cfg.CacheErrorTTL = DefaultCacheErrorTTL
	}
	if cfg.MaxCacheEntries == 0 {
		cfg.MaxCacheEntries = DefaultMaxCacheEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Authorizer{
		cfg:   cfg,
		jobs:  newCache[*gitlab.AllowedAgentsForJob](cfg.MaxCacheEntries, cfg.Now),
		users: newCache[*gitlab.AuthorizeProxyUserResponse](cfg.MaxCacheEntries, cfg.Now),
	}, nil
}

// Grant is GitLab's yes: who the caller is, and as whom agentk acts.
type Grant struct {
	Kind    Kind
	AgentID int64
	// ConfigProjectID is the agent's configuration project.
	ConfigProjectID int64
	UserID          int64
	Username        string
	// CI jobs only: the job, its pipeline and project, and the agent's
	// ci_access default_namespace for that project.
	JobID, PipelineID, ProjectID int64
	DefaultNamespace             string
	// Identity is who agentk impersonates; nil means the agent's own
	// service account (access_as: agent).
	Identity *Identity
}

// Authorize checks c with GitLab (or its cached answer). Errors wrap
// ErrUnauthorized, ErrForbidden, ErrUnavailable or ErrAccessAs.
func (a *Authorizer) Authorize(ctx context.Context, c Credential) (*Grant, error) {
	switch c.Kind {
	case KindCIJob:
		return a.authorizeJob(ctx, c)
	case KindPAT, KindSessionCookie:
		return a.authorizeUser(ctx, c)
	default:
		return nil, fmt.Errorf("%w: unknown credential kind %d", ErrMalformed, c.Kind)
	}
}

// ttl caches GitLab's refusals briefly and its outages not at all.
func (a *Authorizer) ttl(err error) time.Duration {
	switch {
	case err == nil:
		return a.cfg.CacheTTL
	case gitlab.IsRefusal(err):
		return a.cfg.CacheErrorTTL
	default:
		return 0
	}
}

func (a *Authorizer) authorizeJob(ctx context.Context, c Credential) (*Grant, error) {
	// One key per job token: the answer lists every agent the job may
	// use, so requests for different agents share it.
	key := keyFor(KindCIJob, 0, c.Token)
	job, err := a.jobs.get(ctx, key, func(ctx context.Context) (*gitlab.AllowedAgentsForJob, error) {
		return a.cfg.GitLab.GetAllowedAgentsForJob(ctx, c.Token)
	}, a.ttl)
	switch {
	case err == nil:
	case errors.Is(err, gitlab.ErrForbidden):
		return nil, fmt.Errorf("%w: GitLab refused this CI job token access to agents: %w", ErrForbidden, err)
	case gitlab.IsRefusal(err):
		return nil, fmt.Errorf("%w: GitLab does not know this CI job token (is the job still running?): %w", ErrUnauthorized, err)
	default:
		return nil, unavailable(err)
	}
	var agent *gitlab.AllowedAgent
	for i := range job.AllowedAgents {
		if int64(job.AllowedAgents[i].ID) == c.AgentID {
			agent = &job.AllowedAgents[i]
			break
		}
	}
	if agent == nil {
		return nil, fmt.Errorf("%w: agent %d is not in this job's allowed agents (the agent's ci_access does not list the job's project or group)", ErrForbidden, c.AgentID)
	}
	id, err := JobIdentity(job, agent)
	if err != nil {
		return nil, err
	}
	return &Grant{
		Kind: KindCIJob, AgentID: c.AgentID, ConfigProjectID: int64(agent.ConfigProject.ID),
		UserID: int64(job.User.ID), Username: job.User.Username,
		JobID: int64(job.Job.ID), PipelineID: int64(job.Pipeline.ID), ProjectID: int64(job.Project.ID),
		DefaultNamespace: agent.Configuration.DefaultNamespace,
		Identity:         id,
	}, nil
}

func (a *Authorizer) authorizeUser(ctx context.Context, c Credential) (*Grant, error) {
	key := keyFor(c.Kind, c.AgentID, c.Token, c.CSRFToken)
	resp, err := a.users.get(ctx, key, func(ctx context.Context) (*gitlab.AuthorizeProxyUserResponse, error) {
		return a.cfg.GitLab.AuthorizeProxyUser(ctx, gitlab.AuthorizeProxyUserRequest{
			AgentID: c.AgentID, AccessType: c.Kind.AccessType(), AccessKey: c.Token, CSRFToken: c.CSRFToken,
		})
	}, a.ttl)
	switch {
	case err == nil:
	case gitlab.IsRefusal(err):
		// Upstream answers 401 to each of GitLab's refusals here: GitLab
		// does not say whether the user, the token or the agent was wrong.
		return nil, fmt.Errorf("%w: GitLab refused this %s for agent %d: %w", ErrUnauthorized, c.Kind.AccessType(), c.AgentID, err)
	default:
		return nil, unavailable(err)
	}
	if int64(resp.Agent.ID) != c.AgentID {
		return nil, fmt.Errorf("%w: GitLab authorized agent %d, the request is for agent %d", ErrUnavailable, resp.Agent.ID, c.AgentID)
	}
	id, err := UserIdentity(resp, c.Kind.AccessType())
	if err != nil {
		return nil, err
	}
	return &Grant{
		Kind: c.Kind, AgentID: c.AgentID, ConfigProjectID: int64(resp.Agent.ConfigProject.ID),
		UserID: int64(resp.User.ID), Username: resp.User.Username,
		Identity: id,
	}, nil
}

func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// CacheLen is how many answers are cached (for tests and metrics).
func (a *Authorizer) CacheLen() int { return a.jobs.len() + a.users.len() }
