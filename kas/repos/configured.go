package repos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"kubetunnel/gitops/gitrepo"
)

// configuredRepos is repositories[] of the kas config: one Cache and
// Poller per repository, so that a reload adds, changes and removes
// repositories while the others keep polling. Mirrors live in the git
// cache directory as with one Cache for all (the same directory per id),
// so a restart finds them. Subscriptions belong to the set, not to a
// mirror: a config stream subscribed to a repository keeps hearing about
// it when a reload replaces its mirror (a new URL), and about one that a
// reload adds.
type configuredRepos struct {
	dir    string
	pcfg   gitrepo.PollerConfig
	logger *slog.Logger

	mu    sync.Mutex // guards repos, subs, ctx, stopped and retired
	repos map[string]*configuredRepo
	subs  map[string]map[chan struct{}]struct{}
	// ctx is Run's (nil before Run): pollers of repositories added later
	// run under it too.
	ctx     context.Context
	stopped bool
	// retired are the caches of removed or replaced repositories: a
	// reader may still hold one, so they are closed only by Close.
	retired []*gitrepo.Cache
	wg      sync.WaitGroup
}

type configuredRepo struct {
	repo   gitrepo.Repository
	cache  *gitrepo.Cache
	poller *gitrepo.Poller
	// stop ends the poller and the notification forwarder; done is closed
	// when both have returned. nil until started.
	stop context.CancelFunc
	done chan struct{}
}

func newConfiguredRepos(dir string, repos []gitrepo.Repository, pcfg gitrepo.PollerConfig, logger *slog.Logger) (*configuredRepos, error) {
	c := &configuredRepos{dir: dir, pcfg: pcfg, logger: logger, repos: map[string]*configuredRepo{}, subs: map[string]map[chan struct{}]struct{}{}}
	if err := gitrepo.ValidateRepositories(repos); err != nil {
		return nil, err
	}
	for _, r := range repos {
		cr, err := c.open(r)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.repos[r.ID] = cr
	}
	return c, nil
}

func (c *configuredRepos) open(r gitrepo.Repository) (*configuredRepo, error) {
	cache, err := gitrepo.New(c.dir, []gitrepo.Repository{r}, c.logger)
	if err != nil {
		return nil, err
	}
	return &configuredRepo{repo: r, cache: cache, poller: gitrepo.NewPoller(cache, c.pcfg, c.logger)}, nil
}

// startLocked runs a repository's poller, and forwards its mirror's
// notifications to the set's subscribers.
func (c *configuredRepos) startLocked(id string, r *configuredRepo) {
	ctx, stop := context.WithCancel(c.ctx)
	r.stop, r.done = stop, make(chan struct{})
	ch, cancel := r.cache.Subscribe(id)
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.poller.Run(ctx) })
	wg.Go(func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				c.notify(id)
			}
		}
	})
	c.wg.Go(func() {
		wg.Wait()
		close(r.done)
	})
}

// halt waits for a started repository's poller to stop.
func (r *configuredRepo) halt() {
	if r.stop != nil {
		r.stop()
		<-r.done
	}
}

// Run polls every repository, those a reload adds too, until ctx is done;
// then it waits for the pollers.
func (c *configuredRepos) Run(ctx context.Context) error {
	c.mu.Lock()
	c.ctx = ctx
	for id, r := range c.repos {
		c.startLocked(id, r)
	}
	c.mu.Unlock()
	<-ctx.Done()
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// Close releases every mirror's files; call after Run returned.
func (c *configuredRepos) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.repos {
		r.cache.Close()
	}
	for _, cache := range c.retired {
		cache.Close()
	}
	c.retired = nil
}

// Changes is what an update did to repositories[]: ids, sorted.
type Changes struct {
	Added, Changed, Removed []string
}

// update makes the set next: new repositories are opened and polled at
// once, removed ones stop, changed ones (URL, credentials) get a fresh
// mirror whose subscribers are told to read again. Opening a mirror is
// the only step that can fail; then nothing has changed.
func (c *configuredRepos) update(next []gitrepo.Repository) (Changes, error) {
	var ch Changes
	if err := gitrepo.ValidateRepositories(next); err != nil {
		return ch, err
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return ch, errors.New("kas is stopping")
	}
	want := map[string]gitrepo.Repository{}
	for _, r := range next {
		want[r.ID] = r
	}
	old := map[string]*configuredRepo{}
	for id, r := range c.repos {
		w, ok := want[id]
		switch {
		case !ok:
			ch.Removed = append(ch.Removed, id)
			old[id] = r
		case w != r.repo:
			ch.Changed = append(ch.Changed, id)
			old[id] = r
		}
	}
	for id := range want {
		if c.repos[id] == nil {
			ch.Added = append(ch.Added, id)
		}
	}
	c.mu.Unlock()
	slices.Sort(ch.Added)
	slices.Sort(ch.Changed)
	slices.Sort(ch.Removed)

	// Readers keep using an old mirror until it is swapped below; its
	// poller stops first so that two never fetch into one directory.
	for _, id := range append(slices.Clone(ch.Changed), ch.Removed...) {
		old[id].halt()
	}
	opened := map[string]*configuredRepo{}
	var openErr error
	for _, id := range append(slices.Clone(ch.Added), ch.Changed...) {
		r, err := c.open(want[id])
		if err != nil {
			openErr = fmt.Errorf("repositories: %q: %w", id, err)
			break
		}
		opened[id] = r
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if openErr != nil || c.stopped {
		// Back to how it was: restart the old pollers.
		for _, r := range opened {
			r.cache.Close()
		}
		for id, r := range old {
			if c.ctx != nil && !c.stopped {
				c.startLocked(id, r)
			}
		}
		if openErr == nil {
			openErr = errors.New("kas is stopping")
		}
		return Changes{}, openErr
	}
	for id, r := range old {
		delete(c.repos, id)
		c.retired = append(c.retired, r.cache)
	}
	for id, r := range opened {
		c.repos[id] = r
		if c.ctx != nil {
			c.startLocked(id, r)
		}
	}
	for _, id := range append(slices.Clone(ch.Added), ch.Changed...) {
		c.notifyLocked(id)
	}
	return ch, nil
}

func (c *configuredRepos) get(id string) *configuredRepo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.repos[id]
}

// Has reports whether id is in repositories[] now.
func (c *configuredRepos) Has(id string) bool { return c.get(id) != nil }

// IDs lists the repositories, sorted.
func (c *configuredRepos) IDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.repos))
	for id := range c.repos {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// repositories lists repositories[] as configured now, sorted by id.
func (c *configuredRepos) repositories() []gitrepo.Repository {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := make([]gitrepo.Repository, 0, len(c.repos))
	for _, r := range c.repos {
		list = append(list, r.repo)
	}
	slices.SortFunc(list, func(a, b gitrepo.Repository) int { return strings.Compare(a.ID, b.ID) })
	return list
}

func (c *configuredRepos) unknown(id string) error {
	return fmt.Errorf("repository %q: %w", id, gitrepo.ErrUnknownRepository)
}

func (c *configuredRepos) Resolve(id string, ref gitrepo.Ref) (string, error) {
	r := c.get(id)
	if r == nil {
		return "", c.unknown(id)
	}
	return r.cache.Resolve(id, ref)
}

func (c *configuredRepos) ReadFile(id, commit, path string) ([]byte, error) {
	r := c.get(id)
	if r == nil {
		return nil, c.unknown(id)
	}
	return r.cache.ReadFile(id, commit, path)
}

func (c *configuredRepos) Walk(id, commit string, fn gitrepo.WalkFunc) error {
	r := c.get(id)
	if r == nil {
		return c.unknown(id)
	}
	return r.cache.Walk(id, commit, fn)
}

// Fetch fetches a repository now (outside its poller).
func (c *configuredRepos) Fetch(ctx context.Context, id string) (bool, error) {
	r := c.get(id)
	if r == nil {
		return false, c.unknown(id)
	}
	return r.cache.Fetch(ctx, id)
}

// Trigger asks for an immediate fetch of a repository (push webhook).
func (c *configuredRepos) Trigger(id string) error {
	r := c.get(id)
	if r == nil {
		return c.unknown(id)
	}
	return r.poller.Trigger(id)
}

// Subscribe is gitrepo.Cache.Subscribe for the set: notifications come
// from whichever mirror holds id now, also one a later reload adds.
func (c *configuredRepos) Subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if c.subs[id] == nil {
		c.subs[id] = map[chan struct{}]struct{}{}
	}
	c.subs[id][ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.subs[id], ch)
		if len(c.subs[id]) == 0 {
			delete(c.subs, id)
		}
	}
}

func (c *configuredRepos) notify(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notifyLocked(id)
}

// notifyLocked wakes id's subscribers without waiting for any (their
// channels hold one pending value).
func (c *configuredRepos) notifyLocked(id string) {
	for ch := range c.subs[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
