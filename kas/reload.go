package kas

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"kubetunnel/internal/yamlconf"
	"kubetunnel/kas/status"
	"kubetunnel/tunnel"
)

// DefaultConfigPollPeriod is how often a running kas looks at its config
// file for changes (Server.ConfigPollPeriod).
const DefaultConfigPollPeriod = 5 * time.Second

// reloadableKeys are the config keys a reload applies (top-level, or a
// YAML path); a change anywhere else is logged as needing a restart and
// not applied.
var reloadableKeys = []string{"agents", "users", "repositories",
	"limits.max_connections_per_agent", "limits.max_agent_streams_per_connection"}

// reloader is the state of config reloads.
type reloader struct {
	// mu serialises reloads and guards the fields below.
	mu sync.Mutex
	// running is the config in effect: the start config with the
	// reloadable keys of the last good reload. Read without mu by
	// whoever needs a reloadable value (limits).
	running atomic.Pointer[Config]
	// fileHash is the SHA-256 of the config file as last read, so that the
	// poll reloads (and reports a bad file) once per change.
	fileHash [sha256.Size]byte
	// pending is the hash of changed content the poll saw once: it is
	// applied when the next poll sees the same, so that a file caught
	// half-written (an editor writing in place) is not applied.
	pending [sha256.Size]byte
	// requests holds a pending reload request (SIGHUP).
	requests chan struct{}
	// state is what the status page shows of the last reload; an atomic
	// pointer so that a page load does not wait for a reload in progress.
	state atomic.Pointer[status.ConfigReload]

	total       *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	successful  prometheus.Gauge
}

func newReloader(cfg *Config, reg prometheus.Registerer) *reloader {
	r := &reloader{
		requests: make(chan struct{}, 1),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_config_reload_total",
			Help: "Config reloads (SIGHUP or a changed config file), by result (success, failure).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kas_config_last_reload_success_timestamp_seconds",
			Help: "When the running config was last loaded successfully (at start, or by a reload), as a Unix time.",
		}),
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kas_config_last_reload_successful",
			Help: "1 if the last config reload succeeded (or none was tried), 0 if the config file is bad and the previous config keeps running.",
		}),
	}
	r.running.Store(cfg)
	r.state.Store(&status.ConfigReload{LastSuccessAt: time.Now().UTC()})
	r.total.WithLabelValues("success")
	r.total.WithLabelValues("failure")
	r.lastSuccess.SetToCurrentTime()
	r.successful.Set(1)
	reg.MustRegister(r.total, r.lastSuccess, r.successful)
	return r
}

// RequestReload asks a running kas to read its config file again now (on
// SIGHUP), even if it looks unchanged. It does not wait.
func (s *Server) RequestReload() {
	select {
	case s.reload.requests <- struct{}{}:
	default: // one is pending already
	}
}

// watchConfig reloads the config file on RequestReload and when its
// content changes, until ctx is done.
func (s *Server) watchConfig(ctx context.Context) error {
	period := s.ConfigPollPeriod
	if period == 0 {
		period = DefaultConfigPollPeriod
	}
	var tick <-chan time.Time
	if period > 0 {
		t := time.NewTicker(period)
		defer t.Stop()
		tick = t.C
	}
	// The file may have changed since it was loaded (before Run): its
	// content counts as applied only if it still says what is running,
	// otherwise the first polls apply it (or report it broken).
	s.reload.mu.Lock()
	if data, err := os.ReadFile(s.ConfigFile); err == nil {
		if next, err := ParseConfig(data); err == nil && sameReloadable(s.reload.running.Load(), next) {
			s.reload.fileHash = sha256.Sum256(data)
		}
	}
	s.reload.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.reload.requests:
			s.logger.Info("Reloading the config file (SIGHUP)", "file", s.ConfigFile)
			_ = s.ReloadFile(true)
		case <-tick:
			_ = s.ReloadFile(false)
		}
	}
}

// ReloadFile reads the config file and applies it (see Reload). Unless
// force is set (SIGHUP), content is applied once two reads in a row see it
// (the file has settled), and content already read is skipped. A bad or
// empty file keeps the running config; the error is logged, counted and
// returned.
func (s *Server) ReloadFile(force bool) error {
	r := s.reload
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := os.ReadFile(s.ConfigFile)
	if err != nil {
		if !force && r.fileHash == ([sha256.Size]byte{}) {
			return nil // already reported
		}
		r.fileHash = [sha256.Size]byte{}
		return s.reloadFailedLocked(fmt.Errorf("reading kas config: %w", err))
	}
	sum := sha256.Sum256(data)
	if !force {
		if sum == r.fileHash {
			r.pending = [sha256.Size]byte{}
			return nil
		}
		if sum != r.pending {
			r.pending = sum // applied if the next poll sees it unchanged
			return nil
		}
	}
	r.pending = [sha256.Size]byte{}
	r.fileHash = sum
	if len(bytes.TrimSpace(data)) == 0 {
		// Most likely a write in progress; applied, it would remove every
		// agent and user.
		return s.reloadFailedLocked(errors.New("the config file is empty: not applied (restart kas to run with the defaults)"))
	}
	next, err := ParseConfig(data)
	if err != nil {
		return s.reloadFailedLocked(err)
	}
	if err := s.applyLocked(next); err != nil {
		return s.reloadFailedLocked(err)
	}
	return nil
}

// Reload defaults, validates and applies a config to the running kas:
// agents[], users[], repositories[] and two limits
// (max_connections_per_agent, max_agent_streams_per_connection) take
// effect at once; a change to any other key is logged as needing a
// restart. Sessions of agents that remain keep
// running; those of a removed agent, and those that authenticated with a
// removed token, are closed; an agent whose config_project or projects
// changed is asked to reconnect (drained as at max_connection_age) so that
// it reads the new ones. With gitlab:, agents come from GitLab and a
// reload applies users[] and repositories[].
func (s *Server) Reload(next *Config) error {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	next.Default()
	if err := next.Validate(); err != nil {
		return s.reloadFailedLocked(err)
	}
	if err := s.applyLocked(next); err != nil {
		return s.reloadFailedLocked(err)
	}
	return nil
}

func (s *Server) reloadFailedLocked(err error) error {
	r := s.reload
	r.total.WithLabelValues("failure").Inc()
	r.successful.Set(0)
	attrs := []any{"file", s.ConfigFile, "err", err}
	var ke *yamlconf.Error
	if errors.As(err, &ke) && ke.Path != "" {
		attrs = append(attrs, "key", ke.Path)
	}
	s.logger.Error("Config reload failed: the running config stays in effect", attrs...)
	st := *r.state.Load()
	st.LastReloadAt, st.Result, st.Key, st.Error = time.Now().UTC(), "failure", "", err.Error()
	if ke != nil {
		st.Key = ke.Path
	}
	r.state.Store(&st)
	return err
}

// ConfigReloadStatus is the state of config reloads: when the running
// config was loaded, and the result of the last reload (for a failed one,
// the key and the reason).
func (s *Server) ConfigReloadStatus() status.ConfigReload {
	st := *s.reload.state.Load()
	st.File = s.ConfigFile
	return st
}

// applyLocked makes next's reloadable keys the running ones.
func (s *Server) applyLocked(next *Config) error {
	r := s.reload
	cur := r.running.Load()
	if keys := restartKeys(cur, next); len(keys) > 0 {
		s.logger.Warn("Config reload: these keys changed but take effect only when kas restarts; their running values stay", "file", s.ConfigFile, "keys", keys)
	}
	if s.gitlab != nil && len(next.Agents) > 0 {
		// Validate refuses this; a reload must not change the backend.
		return yamlconf.KeyError("agents", "not used with gitlab: (GitLab is the agent registry)")
	}
	ch, err := s.repoSet.Update(next.Repositories)
	repoCh := setChanges{added: ch.Added, removed: ch.Removed, changed: ch.Changed}
	if err != nil {
		return err
	}
	applied := *cur
	applied.Agents, applied.Users, applied.Repositories = next.Agents, next.Users, next.Repositories
	applied.Limits.MaxConnectionsPerAgent = next.Limits.MaxConnectionsPerAgent
	applied.Limits.MaxAgentStreamsPerConnection = next.Limits.MaxAgentStreamsPerConnection
	r.running.Store(&applied)

	s.users.update(next)
	var agentCh, userCh setChanges
	userCh = diffNames(cur.Users, next.Users, func(u UserEntry) string { return u.Name })
	closed, rotated := 0, 0
	if st, ok := s.registry.(reloadableRegistry); ok {
		old := map[string]Agent{}
		for _, a := range st.Agents() {
			old[a.Key] = a
		}
		st.update(next)
		agentCh = diffNames(cur.Agents, next.Agents, func(a AgentEntry) string { return a.Name })
		for _, key := range s.sessions.Agents() {
			a, ok := st.Agent(key)
			for _, sess := range s.sessions.SessionsOf(key) {
				switch {
				case !ok:
					sess.Revoke("a config reload removed this agent from agents[]")
					closed++
				case !st.hasToken(key, sess.TokenSHA256):
					sess.Revoke("a config reload removed the token this connection authenticated with from agents[].token_sha256")
					closed++
				case a.ConfigProject != old[key].ConfigProject || !slices.Equal(a.Projects, old[key].Projects):
					sess.RequestRotation("a config reload changed the agent's config_project or projects")
					rotated++
				}
			}
		}
	}
	r.total.WithLabelValues("success").Inc()
	r.lastSuccess.SetToCurrentTime()
	r.successful.Set(1)
	now := time.Now().UTC()
	r.state.Store(&status.ConfigReload{LastSuccessAt: now, LastReloadAt: now, Result: "success"})
	if agentCh.empty() && userCh.empty() && repoCh.empty() {
		s.logger.Info("Config reloaded: agents, users and repositories unchanged", "file", s.ConfigFile)
		return nil
	}
	s.logger.Info("Config reloaded", "file", s.ConfigFile,
		"agents_added", agentCh.added, "agents_removed", agentCh.removed, "agents_changed", agentCh.changed,
		"users_added", userCh.added, "users_removed", userCh.removed, "users_changed", userCh.changed,
		"repositories_added", repoCh.added, "repositories_removed", repoCh.removed, "repositories_changed", repoCh.changed,
		"connections_closed", closed, "connections_rotated", rotated)
	return nil
}

// limits are the limits in effect: those a reload applies come from the
// newest good config.
func (s *Server) limits() LimitsSection { return s.reload.running.Load().Limits }

// sessionStillValid reports whether a session that just started was
// authenticated with a token the registry still accepts: a reload between
// its handshake and its registration would otherwise miss it.
func (s *Server) sessionStillValid(ts *tunnel.Session) bool {
	st, ok := s.registry.(reloadableRegistry)
	return !ok || st.hasToken(ts.Agent, ts.TokenSHA256)
}

// setChanges names what a reload added, removed and changed in a list.
type setChanges struct {
	added, removed, changed []string
}

func (c setChanges) empty() bool { return len(c.added)+len(c.removed)+len(c.changed) == 0 }

func diffNames[T any](old, next []T, name func(T) string) setChanges {
	var c setChanges
	was := map[string]T{}
	for _, e := range old {
		was[name(e)] = e
	}
	for _, e := range next {
		n := name(e)
		o, ok := was[n]
		switch {
		case !ok:
			c.added = append(c.added, n)
		case !sameConfig(o, e):
			c.changed = append(c.changed, n)
		}
		delete(was, n)
	}
	for n := range was {
		c.removed = append(c.removed, n)
	}
	slices.Sort(c.removed)
	return c
}

// restartKeys lists the keys (as YAML paths, up to three levels deep)
// whose values differ between a and b, other than the reloadable ones.
func restartKeys(a, b *Config) []string {
	var keys []string
	var walk func(path string, x, y reflect.Value, depth int)
	walk = func(path string, x, y reflect.Value, depth int) {
		if x.Kind() == reflect.Pointer && y.Kind() == reflect.Pointer && !x.IsNil() && !y.IsNil() {
			x, y = x.Elem(), y.Elem()
		}
		if x.Kind() != reflect.Struct || depth == 3 {
			if !sameConfig(x.Interface(), y.Interface()) {
				keys = append(keys, path)
			}
			return
		}
		for i := range x.NumField() {
			f := x.Type().Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			p := tag
			if path != "" {
				p = path + "." + tag
			}
			if slices.Contains(reloadableKeys, p) {
				continue
			}
			walk(p, x.Field(i), y.Field(i), depth+1)
		}
	}
	walk("", reflect.ValueOf(*a), reflect.ValueOf(*b), 0)
	return keys
}

// sameReloadable reports whether a and b agree on every key a reload
// applies.
func sameReloadable(a, b *Config) bool {
	return sameConfig(a.Agents, b.Agents) && sameConfig(a.Users, b.Users) &&
		sameConfig(a.Repositories, b.Repositories) &&
		a.Limits.MaxConnectionsPerAgent == b.Limits.MaxConnectionsPerAgent &&
		a.Limits.MaxAgentStreamsPerConnection == b.Limits.MaxAgentStreamsPerConnection
}

// sameConfig reports whether two config values say the same, as YAML: a
// missing list and an empty one are the same.
func sameConfig(a, b any) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	x, errX := yaml.Marshal(a)
	y, errY := yaml.Marshal(b)
	return errX == nil && errY == nil && bytes.Equal(x, y)
}
