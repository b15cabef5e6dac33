package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Poller defaults.
const (
	// DefaultPollPeriod is kas's agent.gitops.poll_period default.
	DefaultPollPeriod = 20 * time.Second
	// DefaultFetchTimeout bounds one fetch, so a server that stops
	// answering does not stop the polling of its repository.
	DefaultFetchTimeout = 5 * time.Minute
)

// PollerConfig tunes a Poller; zero fields take the defaults.
type PollerConfig struct {
	// Period is the time from the end of one fetch of a repository to the
	// start of the next.
	Period time.Duration
	// FetchTimeout bounds one fetch.
	FetchTimeout time.Duration
	// OnFetch, when set, is called after each fetch the Poller makes
	// (periodic or triggered) with how long it took and its error, for
	// metrics. Fetches cut short by Run's context ending are not reported.
	// It runs on the repository's polling goroutine: keep it fast.
	OnFetch func(id string, d time.Duration, err error)
}

func (c PollerConfig) withDefaults() PollerConfig {
	if c.Period <= 0 {
		c.Period = DefaultPollPeriod
	}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	return c
}

// Poller fetches every repository of a Cache periodically, and at once on
// Trigger. Each repository is polled on its own, so a slow one does not
// delay the others.
type Poller struct {
	cache  *Cache
	cfg    PollerConfig
	logger *slog.Logger

	// triggers has one channel per repository (fixed after NewPoller); a
	// pending value is a requested fetch, so triggers coalesce.
	triggers map[string]chan struct{}
	running  atomic.Bool
}

var errAlreadyRunning = errors.New("gitrepo: Poller.Run called twice")

// NewPoller returns a Poller for the repositories of cache.
func NewPoller(cache *Cache, cfg PollerConfig, logger *slog.Logger) *Poller {
	p := &Poller{
		cache:    cache,
		cfg:      cfg.withDefaults(),
		logger:   logger,
		triggers: make(map[string]chan struct{}, len(cache.mirrors)),
	}
	for id := range cache.mirrors {
		p.triggers[id] = make(chan struct{}, 1)
	}
	return p
}

// Run polls until ctx is done, then waits for the fetches in progress to
// stop and returns nil. The first fetch of each repository starts at once.
func (p *Poller) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errAlreadyRunning
	}
	var wg sync.WaitGroup
	for id, trigger := range p.triggers {
		wg.Go(func() { p.poll(ctx, id, trigger) })
	}
	<-ctx.Done() // also with no repositories: Run lives as long as ctx
	wg.Wait()
	return nil
}

// Trigger asks for an immediate fetch of a repository (a push webhook). It
// does not wait for the fetch. A trigger while a fetch runs gets another
// fetch after it, since the push may have come too late for the first.
func (p *Poller) Trigger(id string) error {
	t, ok := p.triggers[id]
	if !ok {
		return fmt.Errorf("repository %q: %w", id, ErrUnknownRepository)
	}
	select {
	case t <- struct{}{}:
	default: // a fetch is requested already
	}
	return nil
}

// Subscribe is Cache.Subscribe: notifications come from every fetch, the
// Poller's and others'.
func (p *Poller) Subscribe(id string) (ch <-chan struct{}, cancel func()) {
	return p.cache.Subscribe(id)
}

func (p *Poller) poll(ctx context.Context, id string, trigger <-chan struct{}) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-trigger:
			timer.Stop()
		}
		p.fetch(ctx, id)
		timer.Reset(p.cfg.Period)
	}
}

func (p *Poller) fetch(ctx context.Context, id string) {
	fctx, cancel := context.WithTimeout(ctx, p.cfg.FetchTimeout)
	defer cancel()
	start := time.Now()
	_, err := p.cache.Fetch(fctx, id)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return // shutting down
	}
	if p.cfg.OnFetch != nil {
		p.cfg.OnFetch(id, time.Since(start), err)
	}
	if err != nil {
		p.logger.Warn("Repository fetch failed", "repository", id, "err", err)
	}
}
