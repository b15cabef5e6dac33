package kas

import (
	"kubetunnel/gitops/manifests"
	"kubetunnel/kas/gitops"
)

// AgentConfigPath is where an agent's config lives in its config project.
func AgentConfigPath(agent string) string { return gitops.AgentConfigPath(agent) }

// newGitOps wires the agents' GitOps and Configuration services
// (kas/gitops) to this server's repositories, access rules and status.
func (s *Server) newGitOps() *gitops.Server {
	g := s.cfg.Agent.GitOps
	cfg := gitops.Config{
		Repositories: s.repoSet,
		Access:       s.projectAccess,
		Limits: manifests.Limits{
			MaxFileSize:  g.MaxManifestFileSize,
			MaxTotalSize: g.MaxTotalManifestFileSize,
			MaxFiles:     g.MaxNumberOfFiles,
			MaxPaths:     g.MaxNumberOfPaths,
		},
		Status: s.status,
		Logger: s.logger,
	}
	if s.repoSet.MirrorsGitLab() {
		// GitLab's agent_info named the config project: the agent may
		// read it, and kas mirrors it from GitLab unless repositories[]
		// has it.
		cfg.OpenConfigProject = func(id string) error {
			if s.repoSet.IsConfigured(id) {
				return nil
			}
			return s.repoSet.Mirror(id)
		}
	}
	if s.gitlab != nil {
		cfg.GitLab = s.gitlab
	}
	return gitops.New(cfg)
}
