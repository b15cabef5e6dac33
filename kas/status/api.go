package status

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/kas/identity"
	"kubetunnel/kas/internal/apijson"
	"kubetunnel/kasproxy"
)

// Config is what a Handler needs: narrow views of the registry, the
// sessions and the replicas, and how to authenticate users.
type Config struct {
	Store *Store
	// Agents is the agent registry.
	Agents interface {
		// Agents lists the agents the registry knows, in a stable order.
		Agents() []identity.Agent
		// Agent returns one by key.
		Agent(key string) (identity.Agent, bool)
	}
	// Sessions are this replica's agent connections.
	Sessions Sessions
	// Replicas, with Redis, finds the replicas an agent is connected to;
	// nil for a single kas.
	Replicas Replicas
	// Replica names this replica on the page (its observability address).
	Replica func() string
	// AuthenticateUser checks a users[] token.
	AuthenticateUser func(ctx context.Context, token string) (kasproxy.User, error)
	// GitLab, with gitlab:, lets GitLab users in with a personal access
	// token (gitlabaccess.Authorizer, shared with the Kubernetes API proxy
	// so their answers are cached once); nil without gitlab:.
	GitLab Authorizer
	// Public is observability.status.public, read per request.
	Public func() bool
	// ConfigReload is the state of the config file's live reloads; nil,
	// or returning nil, when kas runs without a config file.
	ConfigReload func() *ConfigReload
}

// Sessions are an agent's live connections to this replica.
type Sessions interface {
	Count(agent string) int
	// Snapshot lists them, oldest first.
	Snapshot(agent string) []Session
}

// Replicas is the Redis registry of which replica holds which agent.
type Replicas interface {
	Lookup(ctx context.Context, agent string) ([]string, error)
	// Self is this replica's private API URL.
	Self() string
}

// Authorizer asks GitLab whether a credential may use an agent.
type Authorizer interface {
	Authorize(ctx context.Context, c gitlabaccess.Credential) (*gitlabaccess.Grant, error)
}

// Handler serves the status page and the status API.
type Handler struct {
	cfg      Config
	failures *kasproxy.FailureLimiter
}

// New makes a Handler; Routes adds its routes to a mux.
func New(cfg Config) *Handler {
	return &Handler{cfg: cfg, failures: kasproxy.NewFailureLimiter(kasproxy.DefaultAuthFailureBurst, kasproxy.DefaultAuthFailureWindow)}
}

// Routes adds the status page, its sign-in and JSON (GET /, POST /login,
// POST /logout, GET /api/v1/status) and the status API (GET
// /api/v1/agents, GET /api/v1/agents/{name}) to mux.
func (h *Handler) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", h.handleStatusPage)
	mux.HandleFunc("POST /login", h.handleStatusLogin)
	mux.HandleFunc("POST /logout", h.handleStatusLogout)
	mux.HandleFunc("GET /api/v1/status", h.handleStatusJSON)
	mux.HandleFunc("GET /api/v1/agents", h.handleListAgents)
	mux.HandleFunc("GET /api/v1/agents/{name}", h.handleGetAgent)
}

// agentStatus builds the status of an agent the registry knows.
func (h *Handler) agentStatus(a identity.Agent) Agent {
	st := Agent{Name: a.Name, ID: a.ID, ConfigProject: a.ConfigProject, ConnectedSessions: h.cfg.Sessions.Count(a.Key)}
	h.cfg.Store.Fill(a.Key, &st)
	return st
}

// handleListAgents serves GET /api/v1/agents: every configured agent, in
// config order, with its sessions, config commit and manifest projects.
//
// The observability listener has no authentication: this API shows agent
// names, repository ids, commits and sync errors to whoever can reach the
// listener. Keep observability.listen on a private address. A caller that
// sends a user token (Authorization: Bearer: a users[] token, or with
// gitlab: a GitLab personal access token) sees only the agents that user
// may use.
func (h *Handler) handleListAgents(w http.ResponseWriter, r *http.Request) {
	viewer, ok := h.statusScope(w, r)
	if !ok {
		return
	}
	agents := h.cfg.Agents.Agents()
	list := make([]Agent, 0, len(agents))
	for _, a := range agents {
		if viewer.sees(a) {
			list = append(list, h.agentStatus(a))
		}
	}
	apijson.Write(w, http.StatusOK, map[string]any{"agents": list})
}

// handleGetAgent serves GET /api/v1/agents/{name}: one agent, or 404 for a
// name that is not in the kas config or (with a user token) that the user
// may not use: the same answer, so it does not tell which agents exist.
func (h *Handler) handleGetAgent(w http.ResponseWriter, r *http.Request) {
	viewer, ok := h.statusScope(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if a, ok := h.cfg.Agents.Agent(name); ok && viewer.sees(a) {
		apijson.Write(w, http.StatusOK, h.agentStatus(a))
		return
	}
	msg := fmt.Sprintf("no agent %q that you may see", name)
	if h.cfg.GitLab != nil {
		msg = fmt.Sprintf("no agent with id %q that you may see (an agent of GitLab's is known once it has connected since kas started)", name)
	}
	apijson.Write(w, http.StatusNotFound, apijson.Error{Error: msg})
}

// statusScope says which agents a status API caller sees: every one
// without a token (viewer nil), the user's agents with a valid user
// token; a bad token is answered 401, GitLab being unavailable 503 (ok
// false).
func (h *Handler) statusScope(w http.ResponseWriter, r *http.Request) (v *viewer, ok bool) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return nil, true
	}
	scheme, token, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		apijson.Write(w, http.StatusUnauthorized, apijson.Error{Error: "Unauthorized: not a valid user token"})
		return nil, false
	}
	v, err := h.authenticate(r.Context(), strings.TrimSpace(token))
	if errors.Is(err, errGitLabUnavailable) {
		apijson.Write(w, http.StatusServiceUnavailable, apijson.Error{Error: err.Error()})
		return nil, false
	}
	if err != nil {
		apijson.Write(w, http.StatusUnauthorized, apijson.Error{Error: "Unauthorized: not a valid user token"})
		return nil, false
	}
	return v, true
}
