package status

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
	"kubetunnel/kas/identity"
	"kubetunnel/kas/internal/apijson"
)

// Report is what the status page shows, and GET /api/v1/status
// returns: the agents the caller may see, as this kas replica knows them.
type Report struct {
	// Replica names the kas replica that answered (its private API URL
	// when several run, else its observability address).
	Replica     string    `json:"replica"`
	GeneratedAt time.Time `json:"generated_at"`
	// User is the users[] name (or with GitLabUser, the GitLab username)
	// the report is for; empty when public.
	User string `json:"user,omitempty"`
	// GitLabUser is set when User is a GitLab user, signed in with a
	// personal access token.
	GitLabUser bool `json:"gitlab_user,omitempty"`
	// ConfigReload is the state of the config file's live reloads; absent
	// when kas runs without a config file.
	ConfigReload *ConfigReload `json:"config_reload,omitempty"`
	Agents       []PageAgent   `json:"agents"`
}

// PageAgent is an agent's status (GET /api/v1/agents) plus its live
// connections to this replica.
type PageAgent struct {
	Agent
	Sessions []Session `json:"sessions"`
	// Replicas are the kas replicas (private API URLs) that hold a
	// connection of the agent, from the Redis registry; only when several
	// replicas run.
	Replicas []string `json:"replicas,omitempty"`
	// RegistryError says why Replicas could not be read.
	RegistryError string `json:"registry_error,omitempty"`
}

// Session is one live agentk connection.
type Session struct {
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

//go:embed page.html
var statusFS embed.FS

var statusTmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
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
}).ParseFS(statusFS, "page.html"))

// viewer is whom a status request is for: a users[] user, or with
// gitlab: a GitLab user. A nil viewer sees every agent (the public page,
// the status API without a token).
type viewer struct {
	name string
	// gitlab is set for a GitLab user (personal access token).
	gitlab bool
	// agents are the keys of the agents the viewer may see.
	agents map[string]bool
}

func (v *viewer) sees(a identity.Agent) bool { return v == nil || v.agents[a.Key] }

var (
	errNoToken            = errors.New("the status page needs a users[] token (or observability.status.public: true in the kas config)")
	errUnknownToken       = errors.New("unknown token: it is not in users[].token_sha256 of the kas config")
	errUnknownTokenGitLab = errors.New("unknown token: it is not in users[].token_sha256 of the kas config, and GitLab lets no agent connected since kas started be reached with it as a personal access token")
	errGitLabUnavailable  = errors.New("GitLab is unavailable: kas cannot check this personal access token now; retry")
)

// user authenticates the request's token (bearer token or the login
// cookie).
func (h *Handler) user(r *http.Request) (*viewer, error) {
	token := ""
	if auth := r.Header.Get("Authorization"); auth != "" {
		t, ok := strings.CutPrefix(auth, "Bearer ")
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
	return h.authenticate(r.Context(), token)
}

// authenticate finds whom a token is for: a users[] token (the
// table is built per request from the config kas runs with: a page load
// is rare, and nothing has to be kept in step), or with gitlab: a GitLab
// personal access token, as is or as "pat:<token>".
func (h *Handler) authenticate(ctx context.Context, token string) (*viewer, error) {
	if u, err := h.cfg.AuthenticateUser(ctx, token); err == nil {
		v := &viewer{name: u.Name, agents: map[string]bool{}}
		for _, a := range u.Agents {
			v.agents[a] = true
		}
		return v, nil
	}
	if h.cfg.GitLab == nil {
		return nil, errUnknownToken
	}
	return h.gitlabViewer(ctx, strings.TrimPrefix(token, "pat:"))
}

// statusGitLabParallel bounds the authorize_proxy_user calls one status
// request makes at once.
const statusGitLabParallel = 4

// gitlabViewer asks GitLab, for every agent kas knows (those connected
// since it started), whether the personal access token's user may reach
// it, as the Kubernetes API proxy asks (authorize_proxy_user; answers are
// cached for both). The user sees the agents GitLab allows; a token GitLab
// allows for none is unknown.
func (h *Handler) gitlabViewer(ctx context.Context, pat string) (*viewer, error) {
	if pat == "" {
		return nil, errUnknownTokenGitLab
	}
	v := &viewer{gitlab: true, agents: map[string]bool{}}
	var mu sync.Mutex // guards v, unavailable
	unavailable := false
	var g errgroup.Group
	g.SetLimit(statusGitLabParallel)
	for _, a := range h.cfg.Agents.Agents() {
		if a.ID == 0 {
			continue
		}
		g.Go(func() error {
			grant, err := h.cfg.GitLab.Authorize(ctx, gitlabaccess.Credential{Kind: gitlabaccess.KindPAT, AgentID: a.ID, Token: pat})
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
		return nil, errGitLabUnavailable
	default:
		return nil, errUnknownTokenGitLab
	}
}

// report builds the report for viewer (nil: every agent).
func (h *Handler) report(ctx context.Context, viewer *viewer) Report {
	rep := Report{Replica: h.replica(), GeneratedAt: time.Now().UTC(), Agents: []PageAgent{}}
	if viewer != nil {
		rep.User, rep.GitLabUser = viewer.name, viewer.gitlab
	}
	if h.cfg.ConfigReload != nil {
		rep.ConfigReload = h.cfg.ConfigReload()
	}
	for _, a := range h.cfg.Agents.Agents() {
		if !viewer.sees(a) {
			continue
		}
		st := PageAgent{Agent: h.agentStatus(a), Sessions: h.cfg.Sessions.Snapshot(a.Key)}
		if h.cfg.Replicas != nil {
			replicas, err := h.cfg.Replicas.Lookup(ctx, a.Key)
			if err != nil {
				st.RegistryError = err.Error()
			}
			st.Replicas = replicas
		}
		rep.Agents = append(rep.Agents, st)
	}
	slices.SortStableFunc(rep.Agents, func(a, b PageAgent) int { return cmp.Compare(a.Name, b.Name) })
	return rep
}

func (h *Handler) replica() string {
	if h.cfg.Replicas != nil {
		return h.cfg.Replicas.Self()
	}
	if h.cfg.Replica != nil {
		return h.cfg.Replica()
	}
	return ""
}

// authorizeStatus returns whom the request is for (nil when the page is
// public), or writes the 401 (429 for an address over its failures, 503
// when GitLab cannot be asked) and returns ok false.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, html bool) (v *viewer, ok bool) {
	if h.cfg.Public != nil && h.cfg.Public() {
		return nil, true
	}
	client, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !h.failures.Allow(client) {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "too many failed sign-ins from this address; wait a minute", http.StatusTooManyRequests)
		return nil, false
	}
	v, err := h.user(r)
	if err == nil {
		return v, true
	}
	code := http.StatusUnauthorized
	if errors.Is(err, errGitLabUnavailable) {
		code = http.StatusServiceUnavailable
	} else if !errors.Is(err, errNoToken) {
		h.failures.Fail(client)
	}
	w.Header().Set("Cache-Control", "no-store")
	if html {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		msg := ""
		if !errors.Is(err, errNoToken) {
			msg = err.Error()
		}
		_ = statusTmpl.ExecuteTemplate(w, "login", map[string]any{"Error": msg, "GitLab": h.cfg.GitLab != nil})
		return nil, false
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kas status"`)
	}
	apijson.Write(w, code, apijson.Error{Error: err.Error()})
	return nil, false
}

// handleStatusPage serves the HTML status page.
func (h *Handler) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	viewer, ok := h.authorize(w, r, true)
	if !ok {
		return
	}
	rep := h.report(r.Context(), viewer)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	_ = statusTmpl.ExecuteTemplate(w, "page", map[string]any{
		"R": rep, "Now": rep.GeneratedAt, "Refresh": statusRefresh, "Public": viewer == nil, "GitLab": h.cfg.GitLab != nil,
	})
}

// handleStatusLogin takes the login form's token, and sets the cookie if
// the token is a users[] token.
func (h *Handler) handleStatusLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	token := strings.TrimSpace(r.PostFormValue("token"))
	r.Header.Set("Authorization", "Bearer "+token)
	if _, ok := h.authorize(w, r, true); !ok {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: statusCookie, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// handleStatusLogout forgets the cookie.
func (h *Handler) handleStatusLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: statusCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// handleStatusJSON serves GET /api/v1/status.
func (h *Handler) handleStatusJSON(w http.ResponseWriter, r *http.Request) {
	viewer, ok := h.authorize(w, r, false)
	if !ok {
		return
	}
	apijson.Write(w, http.StatusOK, h.report(r.Context(), viewer))
}
