package kas

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"html/template"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"kubetunnel/internal/gitlabaccess"
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

// StatusReport is what the status page shows, and GET /api/v1/status
// returns: the agents the caller may see, as this kas replica knows them.
type StatusReport struct {
	// Replica names the kas replica that answered (its private API URL
	// when several run, else its observability address).
	Replica     string    `json:"replica"`
	GeneratedAt time.Time `json:"generated_at"`
	// User is the users[] name (or with GitLabUser, the GitLab username)
	// the report is for; empty when public.
	User string `json:"user,omitempty"`
	// GitLabUser is set when User is a GitLab user, signed in with a
	// personal access token.
	GitLabUser bool              `json:"gitlab_user,omitempty"`
	Agents     []StatusPageAgent `json:"agents"`
}

// StatusPageAgent is an agent's status (GET /api/v1/agents) plus its live
// connections to this replica.
type StatusPageAgent struct {
	AgentStatus
	Sessions []SessionStatus `json:"sessions"`
	// Replicas are the kas replicas (private API URLs) that hold a
	// connection of the agent, from the Redis registry; only when several
	// replicas run.
	Replicas []string `json:"replicas,omitempty"`
	// RegistryError says why Replicas could not be read.
	RegistryError string `json:"registry_error,omitempty"`
}

// SessionStatus is one live agentk connection.
type SessionStatus struct {
	AgentkVersion  string    `json:"agentk_version"`
	Remote         string    `json:"remote"`
	ConnectedSince time.Time `json:"connected_since"`
	// Draining is set while the connection is being rotated or kas stops.
	Draining bool `json:"draining,omitempty"`
}

// statusCookie holds the token a person typed into the login form, so the
// page's auto-refresh keeps working. HttpOnly and SameSite=Strict: no
// script and no other site's page can read or send it.
const statusCookie = "kas_status_token"

// statusRefresh is how often the page reloads itself.
const statusRefresh = 10 * time.Second

//go:embed statuspage.html
var statusFS embed.FS

var statusTmpl = template.Must(template.New("statuspage.html").Funcs(template.FuncMap{
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"seconds": func(d time.Duration) int { return int(d.Seconds()) },
	// until says how far ahead t is, or "now" once it has passed (the
	// agent is retrying and its report is on the way).
	"until": func(now, t time.Time) string {
		if !t.After(now) {
			return "now"
		}
		return "in " + t.Sub(now).Round(time.Second).String()
	},
}).ParseFS(statusFS, "statuspage.html"))

// snapshot lists the live sessions of agent, oldest first.
func (r *sessionRegistry) snapshot(agent string) []SessionStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]SessionStatus, 0, len(r.byAgent[agent]))
	for _, s := range r.byAgent[agent] {
		out = append(out, SessionStatus{
			AgentkVersion:  s.AgentVersion,
			Remote:         s.Remote,
			ConnectedSince: s.Connected,
			Draining:       s.draining.Load() || s.goneAway.Load(),
		})
	}
	slices.SortFunc(out, func(a, b SessionStatus) int { return a.ConnectedSince.Compare(b.ConnectedSince) })
	return out
}

// statusViewer is whom a status request is for: a users[] user, or with
// gitlab: a GitLab user. A nil viewer sees every agent (the public page,
// the status API without a token).
type statusViewer struct {
	name string
	// gitlab is set for a GitLab user (personal access token).
	gitlab bool
	// agents are the keys of the agents the viewer may see.
	agents map[string]bool
}

func (v *statusViewer) sees(a Agent) bool { return v == nil || v.agents[a.Key] }

// statusAuthorizer asks GitLab whether a credential may use an agent
// (gitlabaccess.Authorizer, shared with the Kubernetes API proxy so their
// answers are cached once).
type statusAuthorizer interface {
	Authorize(ctx context.Context, c gitlabaccess.Credential) (*gitlabaccess.Grant, error)
}

var (
	errNoToken                 = errors.New("the status page needs a users[] token (or observability.status.public: true in the kas config)")
	errUnknownStatusToken      = errors.New("unknown token: it is not in users[].token_sha256 of the kas config")
	errUnknownStatusTokenGL    = errors.New("unknown token: it is not in users[].token_sha256 of the kas config, and GitLab lets no agent connected since kas started be reached with it as a personal access token")
	errStatusGitLabUnavailable = errors.New("GitLab is unavailable: kas cannot check this personal access token now; retry")
)

// statusUser authenticates the request's token (bearer token or the login
// cookie).
func (s *Server) statusUser(r *http.Request) (*statusViewer, error) {
	token := ""
	if h := r.Header.Get("Authorization"); h != "" {
		t, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, errors.New("the Authorization header is not a bearer token")
		}
		token = t
	} else if c, err := r.Cookie(statusCookie); err == nil {
		token = c.Value
	}
	if token == "" {
		return nil, errNoToken
	}
	return s.authenticateStatus(r.Context(), token)
}

// authenticateStatus finds whom a token is for: a users[] token (the
// table is built per request from the config kas runs with: a page load
// is rare, and nothing has to be kept in step), or with gitlab: a GitLab
// personal access token, as is or as "pat:<token>".
func (s *Server) authenticateStatus(ctx context.Context, token string) (*statusViewer, error) {
	if u, err := newUserRegistry(s.cfg).AuthenticateUser(ctx, token); err == nil {
		v := &statusViewer{name: u.Name, agents: map[string]bool{}}
		for _, a := range u.Agents {
			v.agents[a] = true
		}
		return v, nil
	}
	if s.statusGitLab == nil {
		return nil, errUnknownStatusToken
	}
	return s.gitlabViewer(ctx, strings.TrimPrefix(token, "pat:"))
}

// statusGitLabParallel bounds the authorize_proxy_user calls one status
// request makes at once.
const statusGitLabParallel = 4

// gitlabViewer asks GitLab, for every agent kas knows (those connected
// since it started), whether the personal access token's user may reach
// it, as the Kubernetes API proxy asks (authorize_proxy_user; answers are
// cached for both). The user sees the agents GitLab allows; a token GitLab
// allows for none is unknown.
func (s *Server) gitlabViewer(ctx context.Context, pat string) (*statusViewer, error) {
	if pat == "" {
		return nil, errUnknownStatusTokenGL
	}
	v := &statusViewer{gitlab: true, agents: map[string]bool{}}
	var mu sync.Mutex // guards v, unavailable
	unavailable := false
	var g errgroup.Group
	g.SetLimit(statusGitLabParallel)
	for _, a := range s.registry.Agents() {
		if a.ID == 0 {
			continue
		}
		g.Go(func() error {
			grant, err := s.statusGitLab.Authorize(ctx, gitlabaccess.Credential{Kind: gitlabaccess.KindPAT, AgentID: a.ID, Token: pat})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				v.name = grant.Username
				v.agents[a.Key] = true
			case errors.Is(err, gitlabaccess.ErrUnavailable):
				unavailable = true
			}
			return nil
		})
	}
	_ = g.Wait()
	switch {
	case len(v.agents) > 0:
		return v, nil
	case unavailable:
		return nil, errStatusGitLabUnavailable
	default:
		return nil, errUnknownStatusTokenGL
	}
}

// statusReport builds the report for viewer (nil: every agent).
func (s *Server) statusReport(ctx context.Context, viewer *statusViewer) StatusReport {
	rep := StatusReport{Replica: s.statusReplica(), GeneratedAt: time.Now().UTC(), Agents: []StatusPageAgent{}}
	if viewer != nil {
		rep.User, rep.GitLabUser = viewer.name, viewer.gitlab
	}
	for _, a := range s.registry.Agents() {
		if !viewer.sees(a) {
			continue
		}
		st := StatusPageAgent{AgentStatus: s.agentStatus(a), Sessions: s.sessions.snapshot(a.Key)}
		if s.peers != nil {
			replicas, err := s.peers.registry.Lookup(ctx, a.Key)
			if err != nil {
				st.RegistryError = err.Error()
			}
			st.Replicas = replicas
		}
		rep.Agents = append(rep.Agents, st)
	}
	slices.SortStableFunc(rep.Agents, func(a, b StatusPageAgent) int { return cmp.Compare(a.Name, b.Name) })
	return rep
}

func (s *Server) statusReplica() string {
	if s.peers != nil {
		return s.peers.registry.Self()
	}
	if a := s.Addr("observability"); a != nil {
		return a.String()
	}
	return ""
}

// statusPage serves the page, its sign-in and its JSON. Failed sign-ins
// and bad tokens count against the client's address as on the Kubernetes
// API proxy (20 a minute), to slow down token guessing.
type statusPage struct {
	s        *Server
	failures *kasproxy.FailureLimiter
}

// authorizeStatus returns whom the request is for (nil when the page is
// public), or writes the 401 (429 for an address over its failures, 503
// when GitLab cannot be asked) and returns ok false.
func (p *statusPage) authorizeStatus(w http.ResponseWriter, r *http.Request, html bool) (viewer *statusViewer, ok bool) {
	s := p.s
	if s.cfg.Observability.Status.Public {
		return nil, true
	}
	client, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !p.failures.Allow(client) {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "too many failed sign-ins from this address; wait a minute", http.StatusTooManyRequests)
		return nil, false
	}
	v, err := s.statusUser(r)
	if err == nil {
		return v, true
	}
	code := http.StatusUnauthorized
	if errors.Is(err, errStatusGitLabUnavailable) {
		code = http.StatusServiceUnavailable
	} else if !errors.Is(err, errNoToken) {
		p.failures.Fail(client)
	}
	w.Header().Set("Cache-Control", "no-store")
	if html {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		msg := ""
		if !errors.Is(err, errNoToken) {
			msg = err.Error()
		}
		_ = statusTmpl.ExecuteTemplate(w, "login", map[string]any{"Error": msg, "GitLab": s.statusGitLab != nil})
		return nil, false
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kas status"`)
	}
	writeJSON(w, code, apiError{Error: err.Error()})
	return nil, false
}

// handleStatusPage serves the HTML status page.
func (p *statusPage) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	s := p.s
	viewer, ok := p.authorizeStatus(w, r, true)
	if !ok {
		return
	}
	rep := s.statusReport(r.Context(), viewer)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	_ = statusTmpl.ExecuteTemplate(w, "page", map[string]any{
		"R": rep, "Now": rep.GeneratedAt, "Refresh": statusRefresh, "Public": viewer == nil, "GitLab": s.statusGitLab != nil,
	})
}

// handleStatusLogin takes the login form's token, and sets the cookie if
// the token is a users[] token.
func (p *statusPage) handleStatusLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	token := strings.TrimSpace(r.PostFormValue("token"))
	r.Header.Set("Authorization", "Bearer "+token)
	if _, ok := p.authorizeStatus(w, r, true); !ok {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: statusCookie, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// handleStatusLogout forgets the cookie.
func (p *statusPage) handleStatusLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: statusCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// handleStatusJSON serves GET /api/v1/status.
func (p *statusPage) handleStatusJSON(w http.ResponseWriter, r *http.Request) {
	viewer, ok := p.authorizeStatus(w, r, false)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, p.s.statusReport(r.Context(), viewer))
}

// statusRoutes adds the status page and its JSON to mux.
func (s *Server) statusRoutes(mux *http.ServeMux) {
	p := &statusPage{s: s, failures: kasproxy.NewFailureLimiter(kasproxy.DefaultAuthFailureBurst, kasproxy.DefaultAuthFailureWindow)}
	mux.HandleFunc("GET /{$}", p.handleStatusPage)
	mux.HandleFunc("POST /login", p.handleStatusLogin)
	mux.HandleFunc("POST /logout", p.handleStatusLogout)
	mux.HandleFunc("GET /api/v1/status", p.handleStatusJSON)
}
