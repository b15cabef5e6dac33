package kas

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

	"kubetunnel/gitops/gitrepo"
)

// repoSet is every repository kas reads: the configured repositories[]
// (reloadable, repositories.go) and, with gitlab:, a mirror per
// GitLab project an agent was allowed to read, opened on first use and
// shared by all agents. A repositories[].id equal to a project's full
// path overrides its GitLab URL.
type repoSet struct {
	static *configuredRepos
	gl     *gitlabMirrors // nil without gitlab:
}

// cache is what holds repository id, or nil.
func (r *repoSet) cache(id string) repoReader {
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
func (r *repoSet) Has(id string) bool { return r.cache(id) != nil }

func (r *repoSet) unknown(id string) error {
	return fmt.Errorf("repository %q: %w", id, gitrepo.ErrUnknownRepository)
}

func (r *repoSet) Resolve(id string, ref gitrepo.Ref) (string, error) {
	c := r.cache(id)
	if c == nil {
		return "", r.unknown(id)
	}
	return c.Resolve(id, ref)
}

func (r *repoSet) ReadFile(id, commit, path string) ([]byte, error) {
	c := r.cache(id)
	if c == nil {
		return nil, r.unknown(id)
	}
	return c.ReadFile(id, commit, path)
}

func (r *repoSet) Walk(id, commit string, fn gitrepo.WalkFunc) error {
	c := r.cache(id)
	if c == nil {
		return r.unknown(id)
	}
	return c.Walk(id, commit, fn)
}

func (r *repoSet) Subscribe(id string) (<-chan struct{}, func()) {
	c := r.cache(id)
	if c == nil {
		return make(chan struct{}), func() {}
	}
	return c.Subscribe(id)
}

// webhookRepositories is every repository a push webhook may name: the
// configured ones and the GitLab projects mirrored now.
func (r *repoSet) webhookRepositories(static []gitrepo.Repository) []gitrepo.Repository {
	if r.gl == nil {
		return static
	}
	return append(slices.Clone(static), r.gl.repositories()...)
}

// Trigger asks for an immediate fetch of repository id.
func (r *repoSet) Trigger(id string) error {
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
	cred    GitLabGit
	caFile  string
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

func newGitLabMirrors(cfg *Config, pcfg gitrepo.PollerConfig, logger *slog.Logger) *gitlabMirrors {
	return &gitlabMirrors{
		dir:     filepath.Join(cfg.Git.CacheDir, "gitlab"),
		baseURL: strings.TrimSuffix(cfg.GitLab.Address, "/"),
		cred:    cfg.GitLab.Git,
		caFile:  cfg.GitLab.CACertificateFile,
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
		CAFile:       g.caFile,
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
