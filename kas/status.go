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
	// configIgnored lists the keys of GitLab's agent the config commit
	// sets that have no effect here (agentcfg.Config.Ignored).
	configIgnored []string
	projects      map[string]*ProjectStatus
}

// AgentStatus is one agent in GET /api/v1/agents.
type AgentStatus struct {
	Name string `json:"name"`
	// ID is the GitLab agent id (with gitlab:); the status API's
	// /api/v1/agents/{id} takes it.
	ID int64 `json:"id,omitempty"`
	// ConnectedSessions counts live connections (one per agentk replica).
	ConnectedSessions int    `json:"connected_sessions"`
	ConfigProject     string `json:"config_project,omitempty"`
	// ConfigCommit is the newest valid config commit kas sent the agent,
	// or the one the agent said it had when it connected; empty if unknown.
	ConfigCommit string `json:"config_commit,omitempty"`
	// ConfigError is why the newest config commit was refused, if it was.
	ConfigError string `json:"config_error,omitempty"`
	// ConfigIgnoredKeys are keys of GitLab's agent that the config commit
	// sets and that have no effect here (docs/compatibility.md).
	ConfigIgnoredKeys []string        `json:"config_ignored_keys,omitempty"`
	Projects          []ProjectStatus `json:"projects"`
}

// ProjectStatus is one manifest project of an agent, as the agent's
// config names it: two projects sharing a repository id are two entries.
type ProjectStatus struct {
	// Name is the project's name (manifest_projects[].name, or
	// "<id>@<default_namespace>"); empty until the agent reports a sync
	// (and from agents older than kas).
	Name             string `json:"name,omitempty"`
	ID               string `json:"id"`
	DefaultNamespace string `json:"default_namespace,omitempty"`
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
	CommitID string `json:"commit_id"`
	// Result is synced, failed (retried: see NextRetryAt), stalled (fails
	// the same way until the commit, config or cluster changes) or
	// no_manifests_matched (nothing applied or pruned).
	Result    string `json:"result"`
	Reason    string `json:"reason,omitempty"`
	Applied   int32  `json:"applied"`
	Pruned    int32  `json:"pruned"`
	Unchanged int32  `json:"unchanged"`
	// Health is followed by the agent between syncs: a new report comes
	// when it changes.
	Health string `json:"health,omitempty"`
	// Attempts counts failed attempts in a row at this commit.
	Attempts    int32     `json:"attempts,omitempty"`
	NextRetryAt time.Time `json:"next_retry_at,omitzero"`
	// PendingPrunes are pruned objects still being deleted.
	PendingPrunes []PendingPrune `json:"pending_prunes,omitempty"`
	ReportedAt    time.Time      `json:"reported_at"`
}

// PendingPrune is a pruned object waiting for finalizers.
type PendingPrune struct {
	Object        string    `json:"object"`
	Finalizers    []string  `json:"finalizers,omitempty"`
	DeletingSince time.Time `json:"deleting_since"`
}

// projectName is the key of a reported project: its name, or its id from
// agents that send none.
func projectName(st *rpc.SyncStatus) string {
	if st.GetProjectName() != "" {
		return st.GetProjectName()
	}
	return st.GetProjectId()
}

func newStatusStore(reg prometheus.Registerer) *statusStore {
	s := &statusStore{
		agents: map[string]*agentState{},
		syncStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kas_gitops_sync_status",
			Help: "1 for the result (synced, failed, stalled, no_manifests_matched) of the latest sync an agent reported for a manifest project (by the project's name), 0 for the others.",
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

// maxStatusProjects bounds the projects kept per agent: refused project
// ids come from the agent's requests, so an agent asking for many made-up
// ones must not grow kas's memory.
const maxStatusProjects = 256

// projectLocked returns the entry of a project by name, creating it.
func (s *statusStore) projectLocked(agent, name, id string) *ProjectStatus {
	a := s.agentLocked(agent)
	p := a.projects[name]
	if p == nil {
		p = &ProjectStatus{ID: id}
		if len(a.projects) < maxStatusProjects {
			a.projects[name] = p
		}
	}
	return p
}

// byIDLocked returns the entries of every project with repository id:
// manifest streams are per id. Without any, it makes one keyed by the id,
// which the first report with a name replaces.
func (s *statusStore) byIDLocked(agent, id string) []*ProjectStatus {
	a := s.agentLocked(agent)
	var out []*ProjectStatus
	for _, p := range a.projects {
		if p.ID == id {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = append(out, s.projectLocked(agent, id, id))
	}
	return out
}

func (s *statusStore) sent(agent, project, commit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.byIDLocked(agent, project) {
		p.SentCommit, p.SentAt, p.Error = commit, s.now(), ""
	}
}

func (s *statusStore) streamError(agent, project, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.byIDLocked(agent, project) {
		p.Error = msg
	}
}

func (s *statusStore) report(agent string, st *rpc.SyncStatus) {
	now := s.now()
	name := projectName(st)
	r := &SyncReport{
		CommitID: st.GetCommitId(), Result: st.GetResult(), Reason: st.GetReason(),
		Applied: st.GetApplied(), Pruned: st.GetPruned(), Unchanged: st.GetUnchanged(),
		Health: st.GetHealth(), Attempts: st.GetAttempts(), ReportedAt: now,
	}
	if ms := st.GetNextRetryUnixMs(); ms > 0 {
		r.NextRetryAt = time.UnixMilli(ms).UTC()
	}
	for _, pp := range st.GetPendingPrunes() {
		r.PendingPrunes = append(r.PendingPrunes, PendingPrune{Object: pp.GetObject(), Finalizers: pp.GetFinalizers(),
			DeletingSince: time.UnixMilli(pp.GetDeletingSinceUnixMs()).UTC()})
	}
	s.mu.Lock()
	a := s.agentLocked(agent)
	p := a.projects[name]
	if p == nil {
		p = &ProjectStatus{ID: st.GetProjectId()}
		// An entry made by a manifest stream before any report.
		if byID := a.projects[st.GetProjectId()]; byID != nil && byID.Name == "" && name != st.GetProjectId() {
			*p = *byID
			delete(a.projects, st.GetProjectId())
		}
		a.projects[name] = p
	}
	if st.GetProjectName() != "" {
		p.Name = name
	}
	p.DefaultNamespace = st.GetDefaultNamespace()
	p.LastSync = r
	s.mu.Unlock()
	for _, res := range syncResults {
		v := 0.0
		if res == st.GetResult() {
			v = 1
		}
		s.syncStatus.WithLabelValues(agent, name, res).Set(v)
	}
	s.lastSync.WithLabelValues(agent, name).Set(float64(now.UnixNano()) / 1e9)
}

// config records a config commit the agent has: one it reported on
// connecting, or one kas sent (errMsg set: refused, the agent keeps its
// previous one).
func (s *statusStore) config(agent, commit, errMsg string, ignored []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agentLocked(agent)
	if errMsg != "" {
		a.configError = errMsg
		return
	}
	if commit != a.configCommit || ignored != nil {
		a.configIgnored = ignored
	}
	a.configCommit, a.configError = commit, ""
}

// fill copies what is known of an agent into st.
func (s *statusStore) fill(key string, st *AgentStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Projects = []ProjectStatus{}
	a := s.agents[key]
	if a == nil {
		return
	}
	st.ConfigCommit, st.ConfigError = a.configCommit, a.configError
	st.ConfigIgnoredKeys = slices.Clone(a.configIgnored)
	for _, p := range a.projects {
		c := *p
		if p.LastSync != nil {
			r := *p.LastSync
			c.LastSync = &r
		}
		st.Projects = append(st.Projects, c)
	}
	slices.SortFunc(st.Projects, func(a, b ProjectStatus) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Name, b.Name))
	})
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
	return handler(srv, &configStream{ServerStream: ss, agent: agent.Key, store: s})
}

type configStream struct {
	grpc.ServerStream
	agent string
	store *statusStore
}

func (c *configStream) RecvMsg(m any) error {
	err := c.ServerStream.RecvMsg(m)
	if req, ok := m.(*rpc.ConfigurationRequest); ok && err == nil && req.GetCommitId() != "" {
		c.store.config(c.agent, req.GetCommitId(), "", nil)
	}
	return err
}

func (c *configStream) SendMsg(m any) error {
	err := c.ServerStream.SendMsg(m)
	if resp, ok := m.(*rpc.ConfigurationResponse); ok && err == nil {
		var cfg struct {
			Ignored []string `json:"ignored_keys"`
		}
		if len(resp.GetConfigJson()) > 0 {
			_ = json.Unmarshal(resp.GetConfigJson(), &cfg)
		}
		if cfg.Ignored == nil {
			cfg.Ignored = []string{}
		}
		c.store.config(c.agent, resp.GetCommitId(), resp.GetError(), cfg.Ignored)
	}
	return err
}

// agentStatus builds the status of an agent the registry knows.
func (s *Server) agentStatus(a Agent) AgentStatus {
	st := AgentStatus{Name: a.Name, ID: a.ID, ConfigProject: a.ConfigProject, ConnectedSessions: s.sessions.count(a.Key)}
	s.status.fill(a.Key, &st)
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
	agents := s.registry.Agents()
	list := make([]AgentStatus, 0, len(agents))
	for _, a := range agents {
		if visible(a.Key) {
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
	if a, ok := s.registry.Agent(name); ok && visible(a.Key) {
		writeJSON(w, http.StatusOK, s.agentStatus(a))
		return
	}
	msg := fmt.Sprintf("no agent %q that you may see", name)
	if s.gitlab != nil {
		msg = fmt.Sprintf("no agent with id %q that you may see (an agent of GitLab's is known once it has connected since kas started)", name)
	}
	writeJSON(w, http.StatusNotFound, apiError{Error: msg})
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
	s.statusUsers = s.users
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/agents", s.handleListAgents)
	mux.HandleFunc("GET /api/v1/agents/{name}", s.handleGetAgent)
	mux.Handle("/api/v1/webhooks/git", s.webhook)
	mux.Handle("/", next)
	return mux
}
