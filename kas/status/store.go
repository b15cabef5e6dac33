package status

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"kubetunnel/api/rpc"
	"kubetunnel/kas/gitops"
	"kubetunnel/kas/identity"
)

// Store keeps, in memory, what kas knows of each agent's
// configuration and manifest projects: the config commit it has, the last
// manifest commit kas sent, the last sync the agent reported. Keys are
// agent names (authenticated, so from the config) and repository ids
// (checked against the config), so it stays bounded.
type Store struct {
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
	projects      map[string]*Project
}

// Agent is one agent in GET /api/v1/agents.
type Agent struct {
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
	ConfigIgnoredKeys []string  `json:"config_ignored_keys,omitempty"`
	Projects          []Project `json:"projects"`
}

// Project is one manifest project of an agent, as the agent's
// config names it: two projects sharing a repository id are two entries.
type Project struct {
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
	// InProgress is set while a connected agent is applying what kas
	// sent: kas sent a commit (or sent it again) after the agent's latest
	// report, and the agent has not reported the sync of it yet.
	InProgress bool `json:"in_progress,omitempty"`
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

// NewStore makes a Store whose metrics (kas_gitops_sync_status,
// kas_gitops_last_sync_timestamp_seconds) are registered on reg.
func NewStore(reg prometheus.Registerer) *Store {
	s := &Store{
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
func (s *Store) agentLocked(name string) *agentState {
	a := s.agents[name]
	if a == nil {
		a = &agentState{projects: map[string]*Project{}}
		s.agents[name] = a
	}
	return a
}

// MaxProjects bounds the projects kept per agent: refused project
// ids come from the agent's requests, so an agent asking for many made-up
// ones must not grow kas's memory.
const MaxProjects = 256

// projectLocked returns the entry of a project by name, creating it.
func (s *Store) projectLocked(agent, name, id string) *Project {
	a := s.agentLocked(agent)
	p := a.projects[name]
	if p == nil {
		p = &Project{ID: id}
		if len(a.projects) < MaxProjects {
			a.projects[name] = p
		}
	}
	return p
}

// byIDLocked returns the entries of every project with repository id:
// manifest streams are per id. Without any, it makes one keyed by the id,
// which the first report with a name replaces.
func (s *Store) byIDLocked(agent, id string) []*Project {
	a := s.agentLocked(agent)
	var out []*Project
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

// Sent records that kas sent an agent a commit of repository project.
func (s *Store) Sent(agent, project, commit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.byIDLocked(agent, project) {
		p.SentCommit, p.SentAt, p.Error = commit, s.now(), ""
	}
}

// StreamError records why kas ended an agent's manifest stream.
func (s *Store) StreamError(agent, project, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.byIDLocked(agent, project) {
		p.Error = msg
	}
}

// ErrTooManyProjects is Report's answer to a report of a new project
// name for an agent that already has MaxProjects.
var ErrTooManyProjects = fmt.Errorf("the agent already reports %d manifest projects, the most kas keeps", MaxProjects)

// Report records an agent's sync report.
func (s *Store) Report(agent string, st *rpc.SyncStatus) error {
	now := s.now()
	name := gitops.ProjectName(st)
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
	if p == nil && len(a.projects) >= MaxProjects && a.projects[st.GetProjectId()] == nil {
		// Names come from the agent: without this bound an agent reporting
		// made-up names would grow kas's memory and its metric series.
		s.mu.Unlock()
		return ErrTooManyProjects
	}
	if p == nil {
		p = &Project{ID: st.GetProjectId()}
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
	for _, res := range gitops.SyncResults {
		v := 0.0
		if res == st.GetResult() {
			v = 1
		}
		s.syncStatus.WithLabelValues(agent, name, res).Set(v)
	}
	s.lastSync.WithLabelValues(agent, name).Set(float64(now.UnixNano()) / 1e9)
	return nil
}

// Config records a config commit the agent has: one it reported on
// connecting, or one kas sent (errMsg set: refused, the agent keeps its
// previous one).
func (s *Store) Config(agent, commit, errMsg string, ignored []string) {
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

// Fill copies what is known of an agent into st; st.ConnectedSessions
// must be set (a project is in progress only while the agent is
// connected).
func (s *Store) Fill(key string, st *Agent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Projects = []Project{}
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
		c.InProgress = st.ConnectedSessions > 0 && p.SentCommit != "" &&
			(p.LastSync == nil || p.LastSync.CommitID != p.SentCommit || p.SentAt.After(p.LastSync.ReportedAt))
		st.Projects = append(st.Projects, c)
	}
	slices.SortFunc(st.Projects, func(a, b Project) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Name, b.Name))
	})
}

// StreamInterceptor watches Configuration streams go by to learn each
// agent's config commit, without the configuration server knowing.
func (s *Store) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != rpc.Configuration_GetConfiguration_FullMethodName {
		return handler(srv, ss)
	}
	agent, ok := identity.FromContext(ss.Context())
	if !ok {
		return handler(srv, ss)
	}
	return handler(srv, &configStream{ServerStream: ss, agent: agent.Key, store: s})
}

type configStream struct {
	grpc.ServerStream
	agent string
	store *Store
}

func (c *configStream) RecvMsg(m any) error {
	err := c.ServerStream.RecvMsg(m)
	if req, ok := m.(*rpc.ConfigurationRequest); ok && err == nil && req.GetCommitId() != "" {
		c.store.Config(c.agent, req.GetCommitId(), "", nil)
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
		c.store.Config(c.agent, resp.GetCommitId(), resp.GetError(), cfg.Ignored)
	}
	return err
}
