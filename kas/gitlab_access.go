package kas

import (
	"fmt"

	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/kasproxy"
)

// newGitLabAccess lets GitLab's callers (CI jobs, users) through the
// Kubernetes API listener, GitLab deciding who may use which agent.
func newGitLabAccess(cfg *Config, gl *gitlab.Client) (*kasproxy.GitLabAccess, error) {
	az, err := gitlabaccess.NewAuthorizer(gitlabaccess.Config{GitLab: gl})
	if err != nil {
		return nil, fmt.Errorf("GitLab access: %w", err)
	}
	a := &kasproxy.GitLabAccess{Authorizer: az, PathPrefix: cfg.Agent.KubernetesAPI.URLPathPrefix}
	if cfg.GitLab.ExternalURL != "" {
		if a.CORS, err = gitlabaccess.NewCORS(cfg.GitLab.ExternalURL); err != nil {
			return nil, fmt.Errorf("gitlab.external_url: %w", err)
		}
	}
	return a, nil
}
