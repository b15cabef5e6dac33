package identity

import (
	"context"
	"log/slog"
	"slices"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Agent is an agent as kas's registry knows it.
type Agent struct {
	// Key names the agent inside kas (sessions, routing between replicas,
	// the proxy's /agents/<key>, the status API, metric labels): its name
	// in the standalone registry, its decimal GitLab id with GitLab.
	Key  string
	Name string
	// ID is the GitLab agent id (0 standalone).
	ID            int64
	ConfigProject string
	// ConfigProjectID is the GitLab project id of ConfigProject (0
	// standalone).
	ConfigProjectID int64
	// Projects are the repositories a standalone agent may read besides
	// its config project (agents[].projects); none by default, so that a
	// leaked token cannot read repositories the agent was not given.
	Projects []string
}

// MayRead reports whether a standalone agent may read repository id.
func (a Agent) MayRead(id string) bool {
	return id == a.ConfigProject || slices.Contains(a.Projects, id)
}

// LogAttrs are the agent's identity for log lines: name, GitLab id and
// config project.
func (a Agent) LogAttrs() []any {
	attrs := a.IDAttrs()
	if a.ConfigProject != "" {
		attrs = append(attrs, "project", a.ConfigProject)
	}
	return attrs
}

// IDAttrs are the agent's name and GitLab id, for lines whose "project"
// is another project.
func (a Agent) IDAttrs() []any {
	if a.ID != 0 {
		return []any{"agent", a.Name, "agent_id", a.ID}
	}
	return []any{"agent", a.Name}
}

// LogValue keeps the token out of any log line that prints an Agent.
func (a Agent) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", a.Name), slog.Int64("id", a.ID), slog.String("config_project", a.ConfigProject))
}

// Info is the credentials.AuthInfo of a gRPC call from an agent: kas's
// transport credentials put it into the gRPC peer of every stream that
// came through an agent's tunnel.
type Info struct {
	credentials.CommonAuthInfo
	Agent Agent
}

// AuthType implements credentials.AuthInfo.
func (Info) AuthType() string { return "kas-tunnel" }

// FromContext returns the calling agent of a gRPC handler.
func FromContext(ctx context.Context) (Agent, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Agent{}, false
	}
	info, ok := p.AuthInfo.(Info)
	return info.Agent, ok
}
