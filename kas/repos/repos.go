// Package repos holds every git repository kas reads: repositories[] of
// the kas config (reloadable, configured.go) and, with gitlab:, a mirror
// per GitLab project an agent was allowed to read. Each is polled on its
// own; kas_git_poll_* metrics time the fetches (metrics.go).
package repos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/gitops/gitrepo"
)

// Config is what New needs.
type Config struct {
	// CacheDir holds the mirrors (GitLab projects under gitlab/).
	CacheDir string
	// Repositories are repositories[]; Update replaces them.
	Repositories []gitrepo.Repository
	// PollPeriod is how often each repository is fetched.
	PollPeriod time.Duration
	// GitLab, when set, lets Mirror open GitLab projects.
	GitLab *GitLab
	Logger *slog.Logger
	// Metrics registers kas_git_poll_duration_seconds and
	// kas_git_poll_errors_total.
	Metrics prometheus.Registerer
}

// GitLab is where GitLab projects are fetched from: HTTPS git at
// Address/<full path>.git with the gitlab.git credential.
type GitLab struct {
	Address      string
	Username     string
	PasswordFile string
	CAFile       string
}

// Set is every repository kas reads: repositories[] and, with GitLab, a
// mirror per GitLab project opened on first use (Mirror) and shared by
// all agents. A repositories[].id equal to a project's full path
// overrides its GitLab URL.
type Set struct {
	static *configuredRepos
	gl     *gitlabMirrors // nil without GitLab
}

// New opens the mirrors of cfg.Repositories (fetching starts with Run).
func New(cfg Config) (*Set, error) {
	ids := make([]string, 0, len(cfg.Repositories))
	for _, r := range cfg.Repositories {
		ids = append(ids, r.ID)
	}
	pcfg := gitrepo.PollerConfig{Period: cfg.PollPeriod, OnFetch: newGitMetrics(cfg.Metrics, ids).onFetch}
	static, err := newConfiguredRepos(cfg.CacheDir, cfg.Repositories, pcfg, cfg.Logger)
	if err != nil {
		return nil, err
	}
	s := &Set{static: static}
	if cfg.GitLab != nil {
		s.gl = newGitLabMirrors(cfg.CacheDir, *cfg.GitLab, pcfg, cfg.Logger)
	}
	return s, nil
}

// Run polls every repository, those added later too, until ctx is done;
// then it waits for the pollers.
func (r *Set) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if r.gl != nil {
		wg.Go(func() { _ = r.gl.Run(ctx) })
	}
	err := r.static.Run(ctx)
	wg.Wait()
	return err
}

// Close releases the mirrors' files; call after Run returned (or
// instead of it).
func (r *Set) Close() {
	r.static.Close()
	if r.gl != nil {
		r.gl.Close()
	}
}

// Update makes repositories[] next (a config reload): see
// configuredRepos.update.
func (r *Set) Update(next []gitrepo.Repository) (Changes, error) {
	return r.static.update(next)
}

// IsConfigured reports whether id is in repositories[] now.
func (r *Set) IsConfigured(id string) bool { return r.static.Has(id) }

// MirrorsGitLab reports whether the set was given GitLab.
func (r *Set) MirrorsGitLab() bool { return r.gl != nil }

// Mirror opens the mirror of GitLab project path (the caller checked with
// GitLab that it may be read) and starts polling it; a no-op when it is
// mirrored already.
func (r *Set) Mirror(path string) error {
	if r.gl == nil {
		return fmt.Errorf("project %q: kas mirrors GitLab projects only with gitlab:", path)
	}
	return r.gl.ensure(path)
}

// cache is what holds repository id, or nil.
func (r *Set) cache(id string) repoReader {
	if r.static.Has(id) {
		return r.static
	}
	if r.gl != nil {
		if c := r.gl.get(id); c != nil {
			return c
		}
	}
	return nil
}

// repoReader is a gitrepo.Cache or configuredRepos.
type repoReader interface {
	Resolve(id string, ref gitrepo.Ref) (string, error)
	ReadFile(id, commit, path string) ([]byte, error)
	Walk(id, commit string, fn gitrepo.WalkFunc) error
	Subscribe(id string) (<-chan struct{}, func())
}

// Has reports whether kas mirrors repository id now.
func (r *Set) Has(id string) bool { return r.cache(id) != nil }

func (r *Set) unknown(id string) error {
	return fmt.Errorf("repository %q: %w", id, gitrepo.ErrUnknownRepository)
}

func (r *Set) Resolve(id string, ref gitrepo.Ref) (string, error) {
	c := r.cache(id)
	if c == nil {
		return "", r.unknown(id)
	}
	return c.Resolve(id, ref)
}

func (r *Set) ReadFile(id, commit, path string) ([]byte, error) {
	c := r.cache(id)
	if c == nil {
		return nil, r.unknown(id)
	}
	return c.ReadFile(id, commit, path)
}

func (r *Set) Walk(id, commit string, fn gitrepo.WalkFunc) error {
	c := r.cache(id)
	if c == nil {
		return r.unknown(id)
	}
	return c.Walk(id, commit, fn)
}

func (r *Set) Subscribe(id string) (<-chan struct{}, func()) {
	c := r.cache(id)
	if c == nil {
		return make(chan struct{}), func() {}
	}
	return c.Subscribe(id)
}

// WebhookRepositories is every repository a push webhook may name: the
// configured ones and the GitLab projects mirrored now.
func (r *Set) WebhookRepositories() []gitrepo.Repository {
	static := r.static.repositories()
	if r.gl == nil {
		return static
	}
	return append(slices.Clone(static), r.gl.repositories()...)
}

// Trigger asks for an immediate fetch of repository id.
func (r *Set) Trigger(id string) error {
	if r.static.Has(id) {
		return r.static.Trigger(id)
	}
	if r.gl != nil {
		if m := r.gl.mirror(id); m != nil {
			return m.poller.Trigger(id)
		}
	}
	return r.unknown(id)
}

// gitlabMirrors keeps one mirror (a Cache and Poller of its own) per
// GitLab project, fetched over HTTPS git from gitlab.address with the
// gitlab.git credential.
type gitlabMirrors struct {
	dir     string
	baseURL string
	cred    GitLab
	pcfg    gitrepo.PollerConfig
	logger  *slog.Logger

	mu      sync.Mutex // guards mirrors, ctx, stopped
	mirrors map[string]*gitlabMirror
	ctx     context.Context // Run's; nil before Run
	stopped bool
	wg      sync.WaitGroup
}

type gitlabMirror struct {
	repo   gitrepo.Repository
	cache  *gitrepo.Cache
	poller *gitrepo.Poller
}

// repositories lists the projects mirrored now (id: the full path), for
// the push webhook to match.
func (g *gitlabMirrors) repositories() []gitrepo.Repository {
	g.mu.Lock()
	defer g.mu.Unlock()
	list := make([]gitrepo.Repository, 0, len(g.mirrors))
	for _, m := range g.mirrors {
		list = append(list, m.repo)
	}
	return list
}

func newGitLabMirrors(cacheDir string, gl GitLab, pcfg gitrepo.PollerConfig, logger *slog.Logger) *gitlabMirrors {
	return &gitlabMirrors{
		dir:     filepath.Join(cacheDir, "gitlab"),
		baseURL: strings.TrimSuffix(gl.Address, "/"),
		cred:    gl,
		pcfg:    pcfg,
		logger:  logger,
		mirrors: map[string]*gitlabMirror{},
	}
}

func (g *gitlabMirrors) mirror(path string) *gitlabMirror {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mirrors[path]
}

func (g *gitlabMirrors) get(path string) *gitrepo.Cache {
	if m := g.mirror(path); m != nil {
		return m.cache
	}
	return nil
}

// ensure opens the mirror of a project (full path, checked by the
// caller with GitLab) and starts polling it.
func (g *gitlabMirrors) ensure(path string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mirrors[path] != nil {
		return nil
	}
	if g.stopped {
		return errors.New("kas is stopping")
	}
	sum := sha256.Sum256([]byte(path))
	repo := gitrepo.Repository{
		ID:           path,
		URL:          g.baseURL + "/" + path + ".git",
		Username:     g.cred.Username,
		PasswordFile: g.cred.PasswordFile,
		CAFile:       g.cred.CAFile,
	}
	c, err := gitrepo.New(filepath.Join(g.dir, hex.EncodeToString(sum[:8])), []gitrepo.Repository{repo}, g.logger)
	if err != nil {
		return fmt.Errorf("project %q: %w", path, err)
	}
	m := &gitlabMirror{repo: repo, cache: c, poller: gitrepo.NewPoller(c, g.pcfg, g.logger)}
	g.mirrors[path] = m
	g.logger.Info("Mirroring GitLab project", "project", path, "url", repo.URL)
	if g.ctx != nil {
		g.startLocked(m)
	}
	return nil
}

func (g *gitlabMirrors) startLocked(m *gitlabMirror) {
	ctx := g.ctx
	g.wg.Go(func() { _ = m.poller.Run(ctx) })
}

// Run polls every mirror, those opened later too, until ctx is done;
// then it waits for the pollers and closes the mirrors.
func (g *gitlabMirrors) Run(ctx context.Context) error {
	g.mu.Lock()
	g.ctx = ctx
	for _, m := range g.mirrors {
		g.startLocked(m)
	}
	g.mu.Unlock()
	<-ctx.Done()
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.wg.Wait()
	return nil
}

// Close releases the mirrors' files; call after Run returned.
func (g *gitlabMirrors) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.mirrors {
		m.cache.Close()
	}
}
