package gitlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Paths of the calls that authorize callers of the Kubernetes API proxy.
const (
	// PathAllowedAgents is called with the CI job's token and no JWT.
	PathAllowedAgents      = "/api/v4/job/allowed_agents"
	PathAuthorizeProxyUser = "/api/v4/internal/kubernetes/authorize_proxy_user"
	// HeaderJobToken carries CI_JOB_TOKEN to allowed_agents.
	HeaderJobToken = "Job-Token"
)

// AllowedAgentsForJob is allowed_agents's answer: the agents a CI job may
// use, and who the job is.
type AllowedAgentsForJob struct {
	AllowedAgents []AllowedAgent `json:"allowed_agents"`
	Job           struct {
		ID ID `json:"id"`
	} `json:"job"`
	Pipeline struct {
		ID ID `json:"id"`
	} `json:"pipeline"`
	Project struct {
		ID     ID `json:"id"`
		Groups []struct {
			ID ID `json:"id"`
		} `json:"groups"`
	} `json:"project"`
	User        User         `json:"user"`
	Environment *Environment `json:"environment,omitempty"`
}

// AllowedAgent is one agent a job may use, with the ci_access settings of
// the agent's config for that job's project or group.
type AllowedAgent struct {
	ID            ID `json:"id"`
	ConfigProject struct {
		ID ID `json:"id"`
	} `json:"config_project"`
	Configuration struct {
		DefaultNamespace string `json:"default_namespace"`
		// AccessAs is the ci_access access_as section as GitLab sends it.
		AccessAs json.RawMessage `json:"access_as,omitempty"`
	} `json:"configuration"`
}

// User is a GitLab user.
type User struct {
	ID       ID     `json:"id"`
	Username string `json:"username"`
}

// Environment is a CI job's environment.
type Environment struct {
	Slug string `json:"slug"`
	Tier string `json:"tier"`
}

// ParseAllowedAgents decodes and checks allowed_agents's answer.
func ParseAllowedAgents(body []byte) (*AllowedAgentsForJob, error) {
	var a AllowedAgentsForJob
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("allowed_agents: %w", err)
	}
	switch {
	case a.Job.ID <= 0:
		return nil, fmt.Errorf("allowed_agents: job.id %d is not positive", a.Job.ID)
	case a.User.ID <= 0 || a.User.Username == "":
		return nil, fmt.Errorf("allowed_agents: user is missing")
	}
	for i, ag := range a.AllowedAgents {
		if ag.ID <= 0 || ag.ConfigProject.ID <= 0 {
			return nil, fmt.Errorf("allowed_agents: allowed_agents[%d] lacks id or config_project.id", i)
		}
	}
	return &a, nil
}

// GetAllowedAgentsForJob asks GitLab which agents the CI job with jobToken
// may use. GitLab checks the job token itself: this call has no JWT.
func (c *Client) GetAllowedAgentsForJob(ctx context.Context, jobToken string) (*AllowedAgentsForJob, error) {
	body, err := c.doWith(ctx, http.MethodGet, PathAllowedAgents, nil, http.Header{HeaderJobToken: {jobToken}}, nil, false)
	if err != nil {
		return nil, err
	}
	a, err := ParseAllowedAgents(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return a, nil
}

// Access types of AuthorizeProxyUserRequest.
const (
	AccessTypeSessionCookie       = "session_cookie"
	AccessTypePersonalAccessToken = "personal_access_token"
)

// AuthorizeProxyUserRequest is authorize_proxy_user's body.
type AuthorizeProxyUserRequest struct {
	AgentID    int64  `json:"agent_id"`
	AccessType string `json:"access_type"`
	AccessKey  string `json:"access_key"`
	CSRFToken  string `json:"csrf_token,omitempty"`
}

// AuthorizeProxyUserResponse is authorize_proxy_user's answer: the user
// and how the agent acts for them (access_as.agent or access_as.user).
type AuthorizeProxyUserResponse struct {
	Agent struct {
		ID            ID `json:"id"`
		ConfigProject struct {
			ID ID `json:"id"`
		} `json:"config_project"`
	} `json:"agent"`
	User     User `json:"user"`
	AccessAs struct {
		Agent *struct{} `json:"agent,omitempty"`
		User  *struct {
			Projects []RoleGrant `json:"projects"`
			Groups   []RoleGrant `json:"groups"`
		} `json:"user,omitempty"`
	} `json:"access_as"`
}

// RoleGrant is a project or group and the user's roles in it.
type RoleGrant struct {
	ID    ID       `json:"id"`
	Roles []string `json:"roles"`
}

// AuthorizeProxyUser asks GitLab whether a user (by session cookie or
// personal access token) may reach an agent. Refusals are
// ErrUnauthorized/ErrForbidden/ErrNotFound.
func (c *Client) AuthorizeProxyUser(ctx context.Context, req AuthorizeProxyUserRequest) (*AuthorizeProxyUserResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	data, err := c.doWith(ctx, http.MethodPost, PathAuthorizeProxyUser, nil, nil, body, true)
	if err != nil {
		return nil, err
	}
	var r AuthorizeProxyUserResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: authorize_proxy_user: %w", ErrUnavailable, err)
	}
	if r.Agent.ID <= 0 || r.User.ID <= 0 || (r.AccessAs.Agent == nil) == (r.AccessAs.User == nil) {
		return nil, fmt.Errorf("%w: authorize_proxy_user: answer lacks agent, user or exactly one access_as", ErrUnavailable)
	}
	return &r, nil
}
