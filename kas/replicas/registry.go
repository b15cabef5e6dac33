package replicas

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// retryPeriod is how soon writes are retried after Redis failed.
const retryPeriod = time.Second

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	Client    redis.UniversalClient
	KeyPrefix string
	// TTL is how long an entry lives without a refresh.
	TTL time.Duration
	// RefreshPeriod is how often every entry is written again.
	RefreshPeriod time.Duration
	// Timeout bounds one batch of writes or one lookup.
	Timeout time.Duration
	Logger  *slog.Logger
	Metrics *Metrics
}

// Registry records in Redis which agents this replica holds, and looks up
// the replicas holding an agent. Register and Unregister never block on
// Redis: Run writes in the background and retries, so a Redis outage
// costs only cross-replica requests.
type Registry struct {
	cfg  RegistryConfig
	self atomic.Pointer[string]
	// healthy is whether the last operation succeeded (logs transitions).
	healthy atomic.Bool
	wake    chan struct{}

	mu         sync.Mutex // guards local, dirty, full and drainUntil
	local      map[string]bool
	dirty      map[string]bool
	full       bool      // rewrite every entry on the next flush
	drainUntil time.Time // non-zero once Drain was called
}

// NewRegistry makes a registry; it writes nothing until Run.
func NewRegistry(cfg RegistryConfig) *Registry {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{cfg: cfg, wake: make(chan struct{}, 1), local: map[string]bool{}, dirty: map[string]bool{}}
	r.healthy.Store(true)
	return r
}

// Key is the Redis key of an agent's entries.
func (r *Registry) Key(agent string) string { return r.cfg.KeyPrefix + ":agent:" + agent }

// Self is this replica's private API URL, as written to Redis.
func (r *Registry) Self() string {
	if p := r.self.Load(); p != nil {
		return *p
	}
	return ""
}

// Register records that this replica holds a session of agent.
func (r *Registry) Register(agent string) { r.mark(agent, true) }

// Unregister records that this replica holds no session of agent.
func (r *Registry) Unregister(agent string) { r.mark(agent, false) }

func (r *Registry) mark(agent string, held bool) {
	r.mu.Lock()
	if held {
		r.local[agent] = true
	} else {
		delete(r.local, agent)
	}
	r.dirty[agent] = true
	r.mu.Unlock()
	r.poke()
}

// Resync asks Run to rewrite every entry soon, e.g. after a new
// connection to Redis (which may have restarted empty).
func (r *Registry) Resync() {
	r.mu.Lock()
	r.full = true
	r.mu.Unlock()
	r.poke()
}

// Drain marks this replica as going away: its entries are rewritten to
// expire within d, so peers try it after the others, and nothing is
// extended past that any more.
func (r *Registry) Drain(d time.Duration) {
	r.mu.Lock()
	r.drainUntil = time.Now().Add(d)
	r.full = true
	r.mu.Unlock()
	r.poke()
}

func (r *Registry) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run writes this replica's entries (self is its private API URL) until
// ctx is done, then removes them.
func (r *Registry) Run(ctx context.Context, self string) error {
	r.self.Store(&self)
	tick := time.NewTicker(r.cfg.RefreshPeriod)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			r.removeAll()
			return nil
		case <-r.wake:
		case <-tick.C:
			r.Resync()
			continue // the wake it caused flushes
		case <-retry.C:
			r.mu.Lock()
			r.full = true
			r.mu.Unlock()
		}
		if !r.flush(ctx) {
			retry.Reset(retryPeriod)
		}
	}
}

// flush writes what changed (or everything after a Resync) in one
// pipeline. On failure the work is kept for the retry.
func (r *Registry) flush(ctx context.Context) bool {
	r.mu.Lock()
	full, dirty := r.full, r.dirty
	r.full, r.dirty = false, map[string]bool{}
	var up, down []string
	if full {
		for a := range r.local {
			up = append(up, a)
		}
	}
	for a := range dirty {
		switch {
		case !r.local[a]:
			down = append(down, a)
		case !full:
			up = append(up, a)
		}
	}
	drainUntil := r.drainUntil
	r.mu.Unlock()
	if len(up) == 0 && len(down) == 0 {
		return true
	}
	op := "register"
	switch {
	case full:
		op = "refresh"
	case len(up) == 0:
		op = "unregister"
	}
	err := r.write(ctx, up, down, drainUntil)
	r.result(op, err)
	if err != nil {
		r.mu.Lock()
		r.full = r.full || full
		for a := range dirty {
			r.dirty[a] = true
		}
		r.mu.Unlock()
		return false
	}
	return true
}

func (r *Registry) write(ctx context.Context, up, down []string, drainUntil time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	self := r.Self()
	now := time.Now()
	expires := now.Add(r.cfg.TTL)
	if !drainUntil.IsZero() {
		expires = drainUntil
	}
	keyTTL := strconv.FormatInt(max(expires.Sub(now).Milliseconds(), 1), 10)
	pipe := r.cfg.Client.Pipeline()
	for _, a := range up {
		key := r.Key(a)
		pipe.ZAdd(ctx, key, redis.Z{Score: float64(expires.UnixMilli()), Member: self})
		// A new key has no expiry (NX sets it); an existing one keeps the
		// longest of its members' (GT), whatever TTL other replicas use.
		pipe.Do(ctx, "pexpire", key, keyTTL, "nx")
		pipe.Do(ctx, "pexpire", key, keyTTL, "gt")
		pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
	}
	for _, a := range down {
		pipe.ZRem(ctx, r.Key(a), self)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// removeAll deletes this replica's entries when it stops.
func (r *Registry) removeAll() {
	r.mu.Lock()
	var down []string
	for a := range r.local {
		down = append(down, a)
	}
	for a := range r.dirty {
		if !r.local[a] {
			down = append(down, a)
		}
	}
	r.local, r.dirty = map[string]bool{}, map[string]bool{}
	r.mu.Unlock()
	if len(down) == 0 {
		return
	}
	// Bounded: a replica must not hang on its way out because Redis is down.
	ctx, cancel := context.WithTimeout(context.Background(), min(r.cfg.Timeout, 2*time.Second))
	defer cancel()
	r.result("unregister", r.write(ctx, nil, down, time.Time{}))
}

func (r *Registry) result(op string, err error) {
	m := r.cfg.Metrics
	if err != nil {
		if m != nil {
			m.RegistryErrors.WithLabelValues(op).Inc()
			m.RegistryUp.Set(0)
		}
		if r.healthy.Swap(false) {
			r.cfg.Logger.Warn("Agent registry (Redis) unreachable: requests for agents connected to other kas replicas fail until it is back", "op", op, "err", err)
		} else {
			r.cfg.Logger.Debug("Agent registry (Redis) still unreachable", "op", op, "err", err)
		}
		return
	}
	if m != nil {
		m.RegistryUp.Set(1)
	}
	if !r.healthy.Swap(true) {
		r.cfg.Logger.Info("Agent registry (Redis) reachable again")
		// Redis may have restarted empty: write everything back.
		r.Resync()
	}
}

// Lookup returns the private API URLs of the other replicas that hold
// agent, in the order to try them: entries refreshed within the last
// refresh period first, in random order (to spread load), then the others
// (replicas shutting down), newest first.
func (r *Registry) Lookup(ctx context.Context, agent string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	now := time.Now()
	zs, err := r.cfg.Client.ZRangeByScoreWithScores(ctx, r.Key(agent), &redis.ZRangeBy{
		Min: strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf",
	}).Result()
	r.result("lookup", err)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no answer within %v: %w", r.cfg.Timeout, err)
		}
		return nil, err
	}
	self := r.Self()
	zs = slices.DeleteFunc(zs, func(z redis.Z) bool { return z.Member == self })
	freshAfter := float64(now.Add(r.cfg.TTL - r.cfg.RefreshPeriod - time.Second).UnixMilli())
	rand.Shuffle(len(zs), func(i, j int) { zs[i], zs[j] = zs[j], zs[i] })
	slices.SortStableFunc(zs, func(a, b redis.Z) int {
		af, bf := a.Score >= freshAfter, b.Score >= freshAfter
		switch {
		case af && bf:
			return 0
		case af:
			return -1
		case bf:
			return 1
		}
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	urls := make([]string, len(zs))
	for i, z := range zs {
		urls[i], _ = z.Member.(string)
	}
	return urls, nil
}
