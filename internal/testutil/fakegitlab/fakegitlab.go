// Package fakegitlab is a GitLab for tests: the internal Kubernetes agent
// API kas calls (agent_info, project_info, agent_configuration,
// usage_metrics, authorize_proxy_user for personal access tokens and
// session cookies with their CSRF token) and allowed_agents for CI job
// tokens, with the JWT checked on every internal call as GitLab checks it,
// and smart-HTTP git for its projects through the real `git http-backend`
// with basic auth. Agents, tokens and per-agent project access are set up
// by the test; tokens can be revoked and the whole GitLab taken down.
package fakegitlab

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/testutil"
)

// Server is a running fake GitLab.
type Server struct {
	*httptest.Server
	// Secret is the decoded JWT key; SecretFile holds it base64-encoded,
	// as GitLab's .gitlab_kas_secret.
	Secret     []byte
	SecretFile string
	// GitUsername and GitPasswordFile are the HTTPS git credential
	// (gitlab.git in kas's config); GitPassword is the file's content.
	GitUsername     string
	GitPassword     string
	GitPasswordFile string
	// CAFile holds the server's certificate (it serves HTTPS on
	// 127.0.0.1), for gitlab.ca_certificate_file.
	CAFile string

	t       testing.TB
	backend string

	mu       sync.Mutex // guards everything below
	down     bool
	refused  map[string]int // calls answered 502 while down, by path
	nextID   int64
	projects map[string]*Project // by full path
	agents   map[int64]*Agent
	tokens   map[string]int64 // agent token → agent id
	configs  []gitlab.AgentConfiguration
	usage    []gitlab.UsageData
	calls    map[string]int // path → calls that passed the JWT check
	jwtFails int
	jobs     map[string]*Job     // CI job token → job
	users    map[string]*User    // personal access token → user
	sessions map[string]*session // _gitlab_kas cookie value (unescaped) → session
}

// session is a browser session of a user: GitLab's _gitlab_kas cookie and
// the CSRF token that must come with it.
type session struct {
	user *User
	csrf string
}

// Job is a running CI job that may use some agents.
type Job struct {
	ID      int64
	Project *Project
	User    string
	Agents  []*Agent
	// Groups are the ids of the project's groups (default: one group,
	// id 1). Environment is the job's environment, if any.
	Groups      []int64
	Environment *gitlab.Environment
	// AccessAs is sent as each agent's configuration.access_as (nil:
	// omitted, which means access_as agent).
	AccessAs json.RawMessage
}

// User is a GitLab user with a personal access token that may reach some
// agents (user_access).
type User struct {
	ID       int64
	Username string
	Agents   []*Agent
	// AsUser answers access_as user (with Projects and Groups) instead
	// of access_as agent.
	AsUser   bool
	Projects []gitlab.RoleGrant
	Groups   []gitlab.RoleGrant
}

// Project is a GitLab project with a real git repository on branch main.
type Project struct {
	ID       int64
	FullPath string
	Repo     *testutil.GitRepo
}

// Agent is a registered agent.
type Agent struct {
	ID            int64
	Name          string
	ConfigProject *Project
	// readable is the set of project paths the agent may read besides
	// its config project.
	readable map[string]bool
}

// New starts a fake GitLab on loopback, over HTTPS.
func New(t testing.TB) *Server {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git is required (the fake GitLab serves git with git http-backend): %v", err)
	}
	dir := t.TempDir()
	s := &Server{
		t:           t,
		backend:     filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Secret:      randomBytes(t, 32),
		GitUsername: "kas-deploy-token",
		GitPassword: hex.EncodeToString(randomBytes(t, 16)),
		nextID:      1,
		projects:    map[string]*Project{},
		agents:      map[int64]*Agent{},
		tokens:      map[string]int64{},
		calls:       map[string]int{},
		jobs:        map[string]*Job{},
		users:       map[string]*User{},
		sessions:    map[string]*session{},
	}
	s.SecretFile = filepath.Join(dir, "gitlab_kas_secret")
	writeFile(t, s.SecretFile, base64.StdEncoding.EncodeToString(s.Secret)+"\n")
	s.GitPasswordFile = filepath.Join(dir, "git_password")
	writeFile(t, s.GitPasswordFile, s.GitPassword+"\n")
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	s.CAFile = filepath.Join(dir, "gitlab-ca.pem")
	writeFile(t, s.CAFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})))
	return s
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) id() int64 {
	id := s.nextID
	s.nextID++
	return id
}

// AddProject creates a project with an initial commit holding files.
func (s *Server) AddProject(fullPath string, files map[string]string) *Project {
	s.t.Helper()
	p := &Project{FullPath: fullPath, Repo: testutil.NewGitRepo(s.t)}
	p.Repo.Commit("initial", files)
	s.mu.Lock()
	defer s.mu.Unlock()
	p.ID = s.id()
	s.projects[fullPath] = p
	return p
}

// Commit pushes a commit to a project's default branch.
func (p *Project) Commit(msg string, files map[string]string) string {
	return p.Repo.Commit(msg, files)
}

// AddAgent registers an agent in a config project (which it may read).
func (s *Server) AddAgent(name string, configProject *Project) *Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &Agent{ID: s.id(), Name: name, ConfigProject: configProject, readable: map[string]bool{}}
	s.agents[a.ID] = a
	return a
}

// Allow lets an agent read a project (as GitLab does for projects the
// agent's config project may access).
func (s *Server) Allow(a *Agent, p *Project) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.readable[p.FullPath] = true
}

// IssueToken creates a token for an agent, as GitLab's UI does.
func (s *Server) IssueToken(a *Agent) string {
	tok := "glagent-" + hex.EncodeToString(randomBytes(s.t, 24))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = a.ID
	return tok
}

// RevokeToken revokes a token: agent_info answers 401 from now on.
func (s *Server) RevokeToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, tok)
}

// AddJob starts a CI job in project that may use agents, and returns its
// CI_JOB_TOKEN.
func (s *Server) AddJob(p *Project, user string, agents ...*Agent) (*Job, string) {
	tok := "glcbt-" + hex.EncodeToString(randomBytes(s.t, 16))
	s.mu.Lock()
	defer s.mu.Unlock()
	j := &Job{ID: s.id(), Project: p, User: user, Agents: agents}
	s.jobs[tok] = j
	return j, tok
}

// AddUser creates a user whose personal access token may reach agents.
func (s *Server) AddUser(username string, agents ...*Agent) (*User, string) {
	tok := "glpat-" + hex.EncodeToString(randomBytes(s.t, 16))
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &User{ID: s.id(), Username: username, Agents: agents}
	s.users[tok] = u
	return u, tok
}

// ConfigureJob changes a job under the server's lock (the server may be
// serving it).
func (s *Server) ConfigureJob(j *Job, f func(*Job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(j)
}

// ConfigureUser changes a user under the server's lock.
func (s *Server) ConfigureUser(u *User, f func(*User)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(u)
}

// AddSession signs u in from a browser: it returns the _gitlab_kas cookie
// value as GitLab sets it (URL-escaped, as Rails' rack escapes cookie
// values) and the CSRF token GitLab's UI sends with it.
func (s *Server) AddSession(u *User) (cookie, csrf string) {
	// Standard base64 has '+', '/' and '=', which rack escapes.
	val := base64.StdEncoding.EncodeToString(randomBytes(s.t, 30)) + "/+="
	csrf = base64.StdEncoding.EncodeToString(randomBytes(s.t, 32))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[val] = &session{user: u, csrf: csrf}
	return url.QueryEscape(val), csrf
}

// SetDown makes every request answer 503 (true) or serves again (false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Calls is how many calls to an internal API path passed the JWT check.
func (s *Server) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// Refused is how many calls to path were answered 502 while down.
func (s *Server) Refused(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused[path]
}

// JWTFailures is how many internal API calls had a bad JWT.
func (s *Server) JWTFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jwtFails
}

// AgentConfigurations returns what kas posted to agent_configuration.
func (s *Server) AgentConfigurations() []gitlab.AgentConfiguration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gitlab.AgentConfiguration(nil), s.configs...)
}

// Usage returns what kas posted to usage_metrics.
func (s *Server) Usage() []gitlab.UsageData {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gitlab.UsageData(nil), s.usage...)
}

const internalPrefix = "/api/v4/internal/kubernetes/"

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	if down {
		if s.refused == nil {
			s.refused = map[string]int{}
		}
		s.refused[r.URL.Path]++
	}
	s.mu.Unlock()
	if down {
		http.Error(w, "502 GitLab is not responding", http.StatusBadGateway)
		return
	}
	switch {
	case r.URL.Path == gitlab.PathAllowedAgents:
		s.allowedAgents(w, r)
	case strings.HasPrefix(r.URL.Path, internalPrefix):
		s.serveInternal(w, r)
	case strings.Contains(r.URL.Path, ".git/"):
		s.serveGit(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) serveInternal(w http.ResponseWriter, r *http.Request) {
	tok := r.Header.Get(gitlab.HeaderKasAPIRequest)
	if err := gitlab.VerifyJWT(s.Secret, tok, gitlab.IssuerKas, gitlab.AudienceGitLab, time.Now()); err != nil {
		s.mu.Lock()
		s.jwtFails++
		s.mu.Unlock()
		s.t.Logf("fake GitLab: %s: %v", r.URL.Path, err)
		jsonError(w, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	s.mu.Lock()
	s.calls[r.URL.Path]++
	s.mu.Unlock()
	switch r.URL.Path {
	case gitlab.PathAgentInfo:
		s.agentInfo(w, r)
	case gitlab.PathProjectInfo:
		s.projectInfo(w, r)
	case gitlab.PathAgentConfiguration:
		var body gitlab.AgentConfiguration
		if !decodePost(w, r, &body) {
			return
		}
		s.mu.Lock()
		s.configs = append(s.configs, body)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case gitlab.PathAuthorizeProxyUser:
		s.authorizeProxyUser(w, r)
	case gitlab.PathUsageMetrics:
		var body gitlab.UsageData
		if !decodePost(w, r, &body) {
			return
		}
		s.mu.Lock()
		s.usage = append(s.usage, body)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		jsonError(w, http.StatusNotFound, "404 Not Found")
	}
}

func decodePost(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Method != http.MethodPost {
		jsonError(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
		return false
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// agentLocked is the agent of the request's Bearer token, or nil.
func (s *Server) agentLocked(r *http.Request) *Agent {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	id, ok := s.tokens[tok]
	if !ok {
		return nil
	}
	return s.agents[id]
}

func (s *Server) agentInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.agentLocked(r)
	s.mu.Unlock()
	if a == nil {
		jsonError(w, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	writeJSON(w, map[string]any{
		"project_id":        a.ConfigProject.ID,
		"agent_id":          a.ID,
		"agent_name":        a.Name,
		"gitaly_info":       map[string]any{"address": "unix:/nonexistent/gitaly.socket", "token": "", "features": map[string]string{}},
		"gitaly_repository": gitalyRepository(a.ConfigProject),
		"default_branch":    "main",
	})
}

func (s *Server) projectInfo(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	s.mu.Lock()
	a := s.agentLocked(r)
	var p *Project
	if a != nil {
		p = s.projects[id]
		if p == nil {
			// A numeric id (GitLab accepts both).
			if n, err := strconv.ParseInt(id, 10, 64); err == nil {
				for _, q := range s.projects {
					if q.ID == n {
						p = q
					}
				}
			}
		}
	}
	allowed := p != nil && (p == a.ConfigProject || a.readable[p.FullPath])
	s.mu.Unlock()
	switch {
	case a == nil:
		jsonError(w, http.StatusUnauthorized, "401 Unauthorized")
	case !allowed:
		// GitLab does not tell a project the agent may not read from one
		// that does not exist.
		jsonError(w, http.StatusNotFound, "404 Project Not Found")
	default:
		writeJSON(w, map[string]any{
			// protojson style: the id as a string, which kas must accept.
			"project_id":        strconv.FormatInt(p.ID, 10),
			"gitaly_info":       map[string]any{"address": "unix:/nonexistent/gitaly.socket"},
			"gitaly_repository": gitalyRepository(p),
			"default_branch":    "main",
		})
	}
}

func gitalyRepository(p *Project) map[string]any {
	return map[string]any{
		"storage_name":    "default",
		"relative_path":   "@hashed/" + strconv.FormatInt(p.ID, 10) + ".git",
		"gl_repository":   "project-" + strconv.FormatInt(p.ID, 10),
		"gl_project_path": p.FullPath,
	}
}

// serveGit serves /<full path>.git/... with git http-backend, behind the
// git credential.
func (s *Server) serveGit(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != s.GitUsername || subtle.ConstantTimeCompare([]byte(pass), []byte(s.GitPassword)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitLab"`)
		http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
		return
	}
	full, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), ".git/")
	s.mu.Lock()
	p := s.projects[full]
	s.mu.Unlock()
	if p == nil {
		http.NotFound(w, r)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/.git/" + rest
	h := &cgi.Handler{
		Path: s.backend,
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + p.Repo.Dir, "GIT_HTTP_EXPORT_ALL=1"},
	}
	h.ServeHTTP(w, r2)
}

// GitURL is the project's HTTPS git URL, as kas builds it.
func (s *Server) GitURL(p *Project) string { return s.URL + "/" + p.FullPath + ".git" }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// allowedAgents serves /api/v4/job/allowed_agents: the job token alone
// authenticates (GitLab does not ask kas for a JWT here).
func (s *Server) allowedAgents(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(gitlab.HeaderKasAPIRequest) != "" {
		// kas's JWT is for the internal API only: refused here so a test
		// notices kas sending it to a public endpoint.
		jsonError(w, http.StatusBadRequest, "unexpected "+gitlab.HeaderKasAPIRequest+" header")
		return
	}
	s.mu.Lock()
	j := s.jobs[r.Header.Get(gitlab.HeaderJobToken)]
	if j != nil {
		s.calls[r.URL.Path]++
	}
	s.mu.Unlock()
	if j == nil {
		jsonError(w, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	s.mu.Lock()
	agents := []map[string]any{}
	for _, a := range j.Agents {
		conf := map[string]any{"default_namespace": "default"}
		if j.AccessAs != nil {
			conf["access_as"] = j.AccessAs
		}
		agents = append(agents, map[string]any{
			"id":             a.ID,
			"config_project": map[string]any{"id": a.ConfigProject.ID},
			"configuration":  conf,
		})
	}
	groups := []map[string]any{{"id": 1}}
	if j.Groups != nil {
		groups = []map[string]any{}
		for _, g := range j.Groups {
			groups = append(groups, map[string]any{"id": g})
		}
	}
	answer := map[string]any{
		"allowed_agents": agents,
		"job":            map[string]any{"id": j.ID},
		"pipeline":       map[string]any{"id": j.ID + 1000},
		"project":        map[string]any{"id": j.Project.ID, "groups": groups},
		"user":           map[string]any{"id": 1, "username": j.User},
	}
	if j.Environment != nil {
		answer["environment"] = *j.Environment
	}
	s.mu.Unlock()
	writeJSON(w, answer)
}

func (s *Server) authorizeProxyUser(w http.ResponseWriter, r *http.Request) {
	var req gitlab.AuthorizeProxyUserRequest
	if !decodePost(w, r, &req) {
		return
	}
	s.mu.Lock()
	var u *User
	switch req.AccessType {
	case gitlab.AccessTypePersonalAccessToken:
		u = s.users[req.AccessKey]
	case gitlab.AccessTypeSessionCookie:
		// GitLab checks the CSRF token against the session's.
		if ss := s.sessions[req.AccessKey]; ss != nil && subtle.ConstantTimeCompare([]byte(ss.csrf), []byte(req.CSRFToken)) == 1 {
			u = ss.user
		}
	default:
		s.mu.Unlock()
		jsonError(w, http.StatusBadRequest, "unknown access_type")
		return
	}
	var agent *Agent
	if u != nil {
		for _, a := range u.Agents {
			if a.ID == req.AgentID {
				agent = a
			}
		}
	}
	var answer map[string]any
	if u != nil && agent != nil {
		accessAs := map[string]any{"agent": map[string]any{}}
		if u.AsUser {
			accessAs = map[string]any{"user": map[string]any{"projects": u.Projects, "groups": u.Groups}}
		}
		answer = map[string]any{
			"agent":     map[string]any{"id": agent.ID, "config_project": map[string]any{"id": agent.ConfigProject.ID}},
			"user":      map[string]any{"id": u.ID, "username": u.Username},
			"access_as": accessAs,
		}
	}
	s.mu.Unlock()
	switch {
	case u == nil:
		jsonError(w, http.StatusUnauthorized, "401 Unauthorized")
	case agent == nil:
		jsonError(w, http.StatusForbidden, "403 Forbidden")
	default:
		writeJSON(w, answer)
	}
}
