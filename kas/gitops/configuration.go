package gitops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kubetunnel/agentcfg"
	"kubetunnel/api/rpc"
	"kubetunnel/gitops/gitrepo"
	"kubetunnel/kas/identity"
)

// AgentConfigPath is where an agent's config lives in its config project.
func AgentConfigPath(agent string) string {
	return path.Join(".gitlab", "agents", agent, "config.yaml")
}

// GetConfiguration streams an agent's config.yaml from its config project
// whenever the commit changes.
func (s *Server) GetConfiguration(req *rpc.ConfigurationRequest, stream rpc.Configuration_GetConfigurationServer) error {
	ctx := stream.Context()
	agent, ok := identity.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "not an agent")
	}
	log := s.cfg.Logger.With(agent.LogAttrs()...)
	if agent.ConfigProject == "" {
		// No config project: the defaults, once; the stream stays open so
		// the agent does not reconnect for nothing.
		if err := s.send(stream, s.build(agent, "", nil, gitrepo.ErrNotFound)); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	if s.cfg.OpenConfigProject != nil {
		// The registry named this project: the agent may read it.
		if err := s.cfg.OpenConfigProject(agent.ConfigProject); err != nil {
			return status.Errorf(codes.Unavailable, "config project %q: %v", agent.ConfigProject, err)
		}
	}
	changed, cancel := s.cfg.Repositories.Subscribe(agent.ConfigProject)
	defer cancel()
	last := req.GetCommitId()
	for {
		commit, err := s.cfg.Repositories.Resolve(agent.ConfigProject, gitrepo.Ref{})
		switch {
		case err != nil:
			// Not fetched yet, or the repository is unreachable: wait for
			// the poller rather than fail the agent's stream.
			log.Debug("Config project not available yet", "err", err)
		case commit != last:
			data, rerr := s.cfg.Repositories.ReadFile(agent.ConfigProject, commit, AgentConfigPath(agent.Name))
			resp := s.build(agent, commit, data, rerr)
			if resp.Error != "" {
				log.Warn("Agent config is invalid; the agent keeps its last good config", "commit", commit, "err", resp.Error)
			} else {
				log.Info("Sending agent config", "commit", commit)
			}
			if err := s.send(stream, resp); err != nil {
				return err
			}
			last = commit
			if resp.Error == "" {
				s.postConfiguration(ctx, agent, commit, resp.ConfigJson, log)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (s *Server) send(stream rpc.Configuration_GetConfigurationServer, resp *rpc.ConfigurationResponse) error {
	return stream.Send(resp)
}

// build makes the response for one commit: a missing file is the default
// config (as upstream), an unreadable or invalid one is an error message.
func (s *Server) build(agent identity.Agent, commit string, data []byte, readErr error) *rpc.ConfigurationResponse {
	resp := &rpc.ConfigurationResponse{CommitId: commit, AgentName: agent.Name}
	file := AgentConfigPath(agent.Name)
	if readErr != nil && !errors.Is(readErr, gitrepo.ErrNotFound) {
		resp.Error = fmt.Sprintf("%s: %v", file, readErr)
		return resp
	}
	cfg, err := agentcfg.ParseNamed(file, data, agent.ConfigProject)
	if err != nil {
		resp.Error = fmt.Sprintf("commit %s: %v", commit, err)
		return resp
	}
	js, err := cfg.ToJSON()
	if err != nil {
		resp.Error = fmt.Sprintf("%s: encoding: %v", file, err)
		return resp
	}
	resp.ConfigJson = js
	if msg := cfg.IgnoredWarning(); msg != "" {
		s.cfg.Logger.Warn("Agent config: "+msg, "agent", agent.Name, "commit", commit, "ignored_keys", cfg.Ignored)
	}
	return resp
}

// agentConfigurationTimeout bounds one agent_configuration post.
const agentConfigurationTimeout = 10 * time.Second

// postConfiguration tells GitLab an agent's config, once per agent and
// commit (several agentk replicas share one agent). A failure is logged
// and tried again with the next commit or connection.
func (s *Server) postConfiguration(ctx context.Context, agent identity.Agent, commit string, configJSON []byte, log *slog.Logger) {
	if s.cfg.GitLab == nil || agent.ID == 0 {
		return
	}
	s.mu.Lock()
	if s.posted[agent.Key] == commit {
		s.mu.Unlock()
		return
	}
	s.posted[agent.Key] = commit
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), agentConfigurationTimeout)
	defer cancel()
	if err := s.cfg.GitLab.PostAgentConfiguration(ctx, agent.ID, json.RawMessage(configJSON)); err != nil {
		log.Warn("Could not tell GitLab the agent's config (agent_configuration)", "commit", commit, "err", err)
		s.mu.Lock()
		if s.posted[agent.Key] == commit {
			delete(s.posted, agent.Key)
		}
		s.mu.Unlock()
		return
	}
	log.Debug("Told GitLab the agent's config", "commit", commit)
}
