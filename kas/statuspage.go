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
	"time"

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
	// User is the users[] name the report is for; empty when public.
	User   string            `json:"user,omitempty"`
	Agents []StatusPageAgent `json:"agents"`
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
			Draining:       s.leaving(),
		})
	}
	slices.SortFunc(out, func(a, b SessionStatus) int { return a.ConnectedSince.Compare(b.ConnectedSince) })
	return out
}

// statusUser authenticates the request's users[] token (bearer token or
// the login cookie). The table is built per request from the config kas
// runs with: a page load is rare, and nothing has to be kept in step.
func (s *Server) statusUser(r *http.Request) (kasproxy.User, error) {
	token := ""
	if h := r.Header.Get("Authorization"); h != "" {
		t, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return kasproxy.User{}, errors.New("the Authorization header is not a bearer token")
		}
		token = t
	} else if c, err := r.Cookie(statusCookie); err == nil {
		token = c.Value
	}
	if token == "" {
		return kasproxy.User{}, errNoToken
	}
	u, err := s.users.AuthenticateUser(r.Context(), token)
	if err != nil {
		return kasproxy.User{}, errors.New("unknown token: it is not in users[].token_sha256 of the kas config")
	}
	return u, nil
}

var errNoToken = errors.New("the status page needs a users[] token (or observability.status.public: true in the kas config)")

// statusReport builds the report for user (nil: every agent).
func (s *Server) statusReport(ctx context.Context, user *kasproxy.User) StatusReport {
	rep := StatusReport{Replica: s.statusReplica(), GeneratedAt: time.Now().UTC(), Agents: []StatusPageAgent{}}
	if user != nil {
		rep.User = user.Name
	}
	for _, a := range s.registry.Agents() {
		if user != nil && !slices.Contains(user.Agents, a.Key) {
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

// authorizeStatus returns the user the request is for (nil when the page
// is public), or writes the 401 (429 for an address over its failures)
// and returns ok false.
func (p *statusPage) authorizeStatus(w http.ResponseWriter, r *http.Request, html bool) (user *kasproxy.User, ok bool) {
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
	u, err := s.statusUser(r)
	if err == nil {
		return &u, true
	}
	if !errors.Is(err, errNoToken) {
		p.failures.Fail(client)
	}
	w.Header().Set("Cache-Control", "no-store")
	if html {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		msg := ""
		if !errors.Is(err, errNoToken) {
			msg = err.Error()
		}
		_ = statusTmpl.ExecuteTemplate(w, "login", map[string]any{"Error": msg})
		return nil, false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="kas status"`)
	writeJSON(w, http.StatusUnauthorized, apiError{Error: err.Error()})
	return nil, false
}

// handleStatusPage serves the HTML status page.
func (p *statusPage) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	s := p.s
	user, ok := p.authorizeStatus(w, r, true)
	if !ok {
		return
	}
	rep := s.statusReport(r.Context(), user)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	_ = statusTmpl.ExecuteTemplate(w, "page", map[string]any{
		"R": rep, "Now": rep.GeneratedAt, "Refresh": statusRefresh, "Public": user == nil,
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
	user, ok := p.authorizeStatus(w, r, false)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, p.s.statusReport(r.Context(), user))
}

// statusRoutes adds the status page and its JSON to mux.
func (s *Server) statusRoutes(mux *http.ServeMux) {
	p := &statusPage{s: s, failures: kasproxy.NewFailureLimiter(kasproxy.DefaultAuthFailureBurst, kasproxy.DefaultAuthFailureWindow)}
	mux.HandleFunc("GET /{$}", p.handleStatusPage)
	mux.HandleFunc("POST /login", p.handleStatusLogin)
	mux.HandleFunc("POST /logout", p.handleStatusLogout)
	mux.HandleFunc("GET /api/v1/status", p.handleStatusJSON)
}
