package kas

import (
	"context"
	"net/http"
	"slices"

	"kubetunnel/kas/sessions"
	"kubetunnel/kas/status"
	"kubetunnel/kasproxy"
)

// StatusSection configures the status page (/ on the observability
// listener) and its JSON (/api/v1/status).
type StatusSection struct {
	// Public shows every agent to anyone who can reach the observability
	// listener. Otherwise a users[] token is needed (bearer token, or the
	// page's login form) and shows the agents that user may reach.
	Public bool `yaml:"public"`
}

// The status API's types (package kas/status), under the names kas has
// always exported them by.
type (
	AgentStatus     = status.Agent
	ProjectStatus   = status.Project
	SyncReport      = status.SyncReport
	StatusReport    = status.Report
	StatusPageAgent = status.PageAgent
	SessionStatus   = status.Session
)

// statusRoutes adds the status page and the status API (kas/status) to
// mux.
func (s *Server) statusRoutes(mux *http.ServeMux) {
	cfg := status.Config{
		Store:    s.status,
		Agents:   s.registry,
		Sessions: statusSessions{s.sessions},
		Replica: func() string {
			if a := s.Addr("observability"); a != nil {
				return a.String()
			}
			return ""
		},
		AuthenticateUser: func(ctx context.Context, token string) (kasproxy.User, error) {
			return s.users.AuthenticateUser(ctx, token)
		},
		Public: func() bool { return s.cfg.Observability.Status.Public },
		ConfigReload: func() *status.ConfigReload {
			if s.ConfigFile == "" {
				return nil
			}
			st := s.ConfigReloadStatus()
			return &st
		},
	}
	if s.peers != nil {
		cfg.Replicas = s.peers.registry
	}
	if s.statusGitLab != nil {
		cfg.GitLab = s.statusGitLab
	}
	status.New(cfg).Routes(mux)
}

// apiHandler serves the git webhook on the observability listener and
// passes every other request to next.
func (s *Server) apiHandler(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/v1/webhooks/git", s.webhook)
	mux.Handle("/", next)
	return mux
}

// statusSessions is the session registry as the status page sees it.
type statusSessions struct{ r *sessions.Registry }

func (v statusSessions) Count(agent string) int { return v.r.Count(agent) }

// Snapshot lists the live sessions of agent, oldest first.
func (v statusSessions) Snapshot(agent string) []status.Session {
	list := v.r.SessionsOf(agent)
	out := make([]status.Session, 0, len(list))
	for _, s := range list {
		out = append(out, status.Session{
			AgentkVersion:  s.AgentVersion,
			Remote:         s.Remote,
			ConnectedSince: s.Connected,
			Draining:       s.Leaving(),
		})
	}
	slices.SortFunc(out, func(a, b status.Session) int { return a.ConnectedSince.Compare(b.ConnectedSince) })
	return out
}
