package kas

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kubetunnel/internal/gitlab"
)

// projectAccess decides whether agent may read manifest project (as the
// agent's config names it) and returns the repository id kas reads it
// from, or a gRPC status saying why not.
//
// Standalone, the project must be a repositories[].id the agent is given
// (agents[].projects). With gitlab:, GitLab decides: project_info with
// the agent's token; a refusal is NotFound (GitLab itself does not tell a
// project the agent may not read from one that does not exist). The
// project is then mirrored from GitLab, once for all agents.
func (s *Server) projectAccess(ctx context.Context, agent Agent, project string) (string, error) {
	if s.gitlab == nil {
		if !s.repoSet.Has(project) || !agent.MayRead(project) {
			return "", status.Errorf(codes.NotFound, "manifest project %q is not a repository agent %q may read: an agent reads only its config project unless the kas config lists the repository in repositories[] and in that agent's agents[].projects (or fix gitops.manifest_projects[].id)", project, agent.Name)
		}
		return project, nil
	}
	// Ask with a token GitLab accepted for this agent; one it no longer
	// accepts (revoked) is forgotten and the next tried.
	var info *gitlab.ProjectInfo
	err := gitlab.ErrUnauthorized
	if reg, ok := s.registry.(tokenRegistry); ok {
		for _, tok := range reg.tokensOf(agent.Key) {
			info, err = s.gitlab.GetProjectInfo(ctx, tok, project)
			if !errors.Is(err, gitlab.ErrUnauthorized) {
				break
			}
			reg.forget(agent.Key, tok)
		}
	}
	switch {
	case gitlab.IsRefusal(err):
		return "", status.Errorf(codes.NotFound, "manifest project %q: GitLab does not let agent %q read it (project_info refused: %v); in GitLab, the agent's config project must have access to it", project, agent.Name, errors.Unwrap(err))
	case err != nil && info == nil:
		return "", status.Errorf(codes.Unavailable, "manifest project %q: cannot ask GitLab whether the agent may read it: %v", project, err)
	}
	id := info.FullPath()
	if s.repoSet.IsConfigured(id) {
		return id, nil
	}
	if err := s.repoSet.Mirror(id); err != nil {
		return "", status.Errorf(codes.Unavailable, "manifest project %q: %v", project, err)
	}
	return id, nil
}
