package kas

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"kubetunnel/api/rpc"
)

// statusStore keeps, in memory, what kas knows of each agent's
// configuration and manifest projects: the config commit it has, the last
// manifest commit kas sent, the last sync the agent reported. Keys are
// agent names (authenticated, so from the config) and repository ids
// (checked against the config), so it stays bounded.
type statusStore struct {
	mu     sync.Mutex // guards agents
	agents map[string]*agentState

	syncStatus *prometheus.GaugeVec
	lastSync   *prometheus.GaugeVec
	now        func() time.Time
}

type agentState struct {
	configCommit string
	configError  string
	projects     map[string]*ProjectStatus
}

// AgentStatus is one agent in GET /api/v1/agents.
type AgentStatus struct {
	Name string `json:"name"`
	// ConnectedSessions counts live connections (one per agentk replica).
	ConnectedSessions int    `json:"connected_sessions"`
	ConfigProject     string `json:"config_project,omitempty"`
	// ConfigCommit is the newest valid config commit kas sent the agent,
	// or the one the agent said it had when it connected; empty if unknown.
	ConfigCommit string `json:"config_commit,omitempty"`
	// ConfigError is why the newest config commit was refused, if it was.
	ConfigError string          `json:"config_error,omitempty"`
	Projects    []ProjectStatus `json:"projects"`
}

// ProjectStatus is one manifest project of an agent.
type ProjectStatus struct {
	ID string `json:"id"`
	// SentCommit is the last commit whose manifests kas sent the agent.
	SentCommit string    `json:"sent_commit,omitempty"`
	SentAt     time.Time `json:"sent_at,omitzero"`
	// Error is why kas last ended the agent's manifest stream (a limit, an
	// unknown ref); cleared when a commit is sent.
	Error string `json:"error,omitempty"`
	// LastSync is the agent's latest ReportSyncStatus.
	LastSync *SyncReport `json:"last_sync,omitempty"`
}

// SyncReport is an agent's report of one sync (rpc.SyncStatus).
type SyncReport struct {
	CommitID   string    `json:"commit_id"`
	Result     string    `json:"result"`
	Reason     string    `json:"reason,omitempty"`
	Applied    int32     `json:"applied"`
	Pruned     int32     `json:"pruned"`
	Unchanged  int32     `json:"unchanged"`
	Health     string    `json:"health,omitempty"`
	ReportedAt time.Time `json:"reported_at"`
}

func newStatusStore(reg prometheus.Registerer) *statusStore {
	s := &statusStore{
		agents: map[string]*agentState{},
		syncStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kas_gitops_sync_status",
			Help: "1 for the result (synced, failed) of the latest sync an agent reported for a manifest project, 0 for the other.",
		}, []string{"agent", "project", "result"}),
		lastSync: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kas_gitops_last_sync_timestamp_seconds",
			Help: "When an agent last reported a sync of a manifest project (Unix time).",
		}, []string{"agent", "project"}),
		now: time.Now,
	}
	reg.MustRegister(s.syncStatus, s.lastSync)
	return s
}

// agentLocked returns the state of an agent, creating it.
func (s *statusStore) agentLocked(name string) *agentState {
	a := s.agents[name]
	if a == nil {
		a = &agentState{projects: map[string]*ProjectStatus{}}
		s.agents[name] = a
	}
	return a
}

func (s *statusStore) projectLocked(agent, project string) *ProjectStatus {
	a := s.agentLocked(agent)
	p := a.projects[project]
	if p == nil {
		p = &ProjectStatus{ID: project}
		a.projects[project] = p
	}
	return p
}

func (s *statusStore) sent(agent, project, commit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projectLocked(agent, project)
	p.SentCommit, p.SentAt, p.Error = commit, s.now(), ""
}

func (s *statusStore) streamError(agent, project, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.projectLocked(agent, project).Error = msg
}

func (s *statusStore) report(agent string, st *rpc.SyncStatus) {
	now := s.now()
	s.mu.Lock()
	s.projectLocked(agent, st.GetProjectId()).LastSync = &SyncReport{
		CommitID: st.GetCommitId(), Result: st.GetResult(), Reason: st.GetReason(),
		Applied: st.GetApplied(), Pruned: st.GetPruned(), Unchanged: st.GetUnchanged(),
		Health: st.GetHealth(), ReportedAt: now,
	}
	s.mu.Unlock()
	for _, r := range syncResults {
		v := 0.0
		if r == st.GetResult() {
			v = 1
		}
		s.syncStatus.WithLabelValues(agent, st.GetProjectId(), r).Set(v)
	}
	s.lastSync.WithLabelValues(agent, st.GetProjectId()).Set(float64(now.UnixNano()) / 1e9)
}

// config records a config commit the agent has: one it reported on
// connecting, or one kas sent (errMsg set: refused, the agent keeps its
// previous one).
func (s *statusStore) config(agent, commit, errMsg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agentLocked(agent)
	if errMsg != "" {
		a.configError = errMsg
		return
	}
	a.configCommit, a.configError = commit, ""
}

// fill copies what is known of an agent into st.
func (s *statusStore) fill(st *AgentStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Projects = []ProjectStatus{}
	a := s.agents[st.Name]
	if a == nil {
		return
	}
	st.ConfigCommit, st.ConfigError = a.configCommit, a.configError
	for _, p := range a.projects {
		c := *p
		if p.LastSync != nil {
			r := *p.LastSync
			c.LastSync = &r
		}
		st.Projects = append(st.Projects, c)
	}
	slices.SortFunc(st.Projects, func(a, b ProjectStatus) int { return cmp.Compare(a.ID, b.ID) })
}

// streamInterceptor watches Configuration streams go by to learn each
// agent's config commit, without the configuration server knowing.
func (s *statusStore) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != rpc.Configuration_GetConfiguration_FullMethodName {
		return handler(srv, ss)
	}
	agent, ok := agentFromContext(ss.Context())
	if !ok {
		return handler(srv, ss)
	}
	return handler(srv, &configStream{ServerStream: ss, agent: agent.Name, store: s})
}

type configStream struct {
	grpc.ServerStream
	agent string
	store *statusStore
}

func (c *configStream) RecvMsg(m any) error {
	err := c.ServerStream.RecvMsg(m)
	if req, ok := m.(*rpc.ConfigurationRequest); ok && err == nil && req.GetCommitId() != "" {
		c.store.config(c.agent, req.GetCommitId(), "")
	}
	return err
}

func (c *configStream) SendMsg(m any) error {
	err := c.ServerStream.SendMsg(m)
	if resp, ok := m.(*rpc.ConfigurationResponse); ok && err == nil {
		c.store.config(c.agent, resp.GetCommitId(), resp.GetError())
	}
	return err
}

// agentStatus builds the status of a configured agent.
func (s *Server) agentStatus(a AgentEntry) AgentStatus {
	st := AgentStatus{Name: a.Name, ConfigProject: a.ConfigProject, ConnectedSessions: s.sessions.count(a.Name)}
	s.status.fill(&st)
	return st
}

// handleListAgents serves GET /api/v1/agents: every configured agent, in
// config order, with its sessions, config commit and manifest projects.
//
// The observability listener has no authentication: this API shows agent
// names, repository ids, commits and sync errors to whoever can reach the
// listener. Keep observability.listen on a private address. A caller that
// sends a user token (Authorization: Bearer) sees only the agents that
// user may use.
func (s *Server) handleListAgents(w http.ResponseWriter, r *http.Request) {
	visible, ok := s.statusScope(w, r)
	if !ok {
		return
	}
	list := make([]AgentStatus, 0, len(s.cfg.Agents))
	for _, a := range s.cfg.Agents {
		if visible(a.Name) {
			list = append(list, s.agentStatus(a))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": list})
}

// handleGetAgent serves GET /api/v1/agents/{name}: one agent, or 404 for a
// name that is not in the kas config or (with a user token) that the user
// may not use: the same answer, so it does not tell which agents exist.
func (s *Server) handleGetAgent(w http.ResponseWriter, r *http.Request) {
	visible, ok := s.statusScope(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	for _, a := range s.cfg.Agents {
		if a.Name == name && visible(name) {
			writeJSON(w, http.StatusOK, s.agentStatus(a))
			return
		}
	}
	writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("no agent %q that you may see", name)})
}

// statusScope says which agents a status API caller sees: every one
// without a token, the user's agents with a valid user token; a bad token
// is answered 401 (ok false).
func (s *Server) statusScope(w http.ResponseWriter, r *http.Request) (visible func(string) bool, ok bool) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return func(string) bool { return true }, true
	}
	scheme, token, _ := strings.Cut(auth, " ")
	u, err := s.statusUsers.AuthenticateUser(r.Context(), strings.TrimSpace(token))
	if !strings.EqualFold(scheme, "Bearer") || err != nil {
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "Unauthorized: not a valid user token"})
		return nil, false
	}
	return func(agent string) bool { return slices.Contains(u.Agents, agent) }, true
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiHandler serves /api/v1/ on the observability listener and passes
// every other request to next.
func (s *Server) apiHandler(next http.Handler) http.Handler {
	s.statusUsers = newUserRegistry(s.cfg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/agents", s.handleListAgents)
	mux.HandleFunc("GET /api/v1/agents/{name}", s.handleGetAgent)
	mux.Handle("/api/v1/webhooks/git", s.webhook)
	mux.Handle("/", next)
	return mux
}
