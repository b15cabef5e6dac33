package gitlabaccess

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// cacheKey is the SHA-256 of a credential and what it is checked for:
// the cache never holds a credential itself.
type cacheKey [sha256.Size]byte

// keyFor hashes fields with their lengths, so ("ab","c") and ("a","bc")
// differ.
func keyFor(kind Kind, agentID int64, secrets ...string) cacheKey {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(kind))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(agentID))
	h.Write(b[:])
	for _, s := range secrets {
		binary.BigEndian.PutUint64(b[:], uint64(len(s)))
		h.Write(b[:])
		h.Write([]byte(s))
	}
	return cacheKey(h.Sum(nil))
}

// cache remembers GitLab's answers (good ones and refusals) until they
// expire, and makes concurrent lookups of one key share one call to
// GitLab: kubectl sends a burst of discovery requests with one token.
type cache[T any] struct {
	max int
	now func() time.Time

	mu       sync.Mutex // guards entries and inflight
	entries  map[cacheKey]cacheEntry[T]
	inflight map[cacheKey]*flight[T]
}

type cacheEntry[T any] struct {
	val     T
	err     error
	expires time.Time
}

type flight[T any] struct {
	done chan struct{} // closed when val and err are set
	val  T
	err  error
}

func newCache[T any](max int, now func() time.Time) *cache[T] {
	return &cache[T]{max: max, now: now, entries: map[cacheKey]cacheEntry[T]{}, inflight: map[cacheKey]*flight[T]{}}
}

// get returns the cached answer for key, or calls fetch (once for all
// concurrent callers of key) and caches what ttl says: ttl returns how
// long to keep the answer, 0 for not at all (outages are not cached).
// fetch runs without the caller's cancellation, so one caller that goes
// away does not fail the others waiting on the same answer; the GitLab
// client's own timeout bounds it.
func (c *cache[T]) get(ctx context.Context, key cacheKey, fetch func(context.Context) (T, error), ttl func(error) time.Duration) (T, error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		if c.now().Before(e.expires) {
			c.mu.Unlock()
			return e.val, e.err
		}
		delete(c.entries, key)
	}
	if f, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.val, f.err
		case <-ctx.Done():
			var zero T
			return zero, context.Cause(ctx)
		}
	}
	f := &flight[T]{done: make(chan struct{})}
	c.inflight[key] = f
	c.mu.Unlock()

	f.val, f.err = fetch(context.WithoutCancel(ctx))

	c.mu.Lock()
	delete(c.inflight, key)
	if d := ttl(f.err); d > 0 {
		if len(c.entries) >= c.max {
			c.evictLocked()
		}
		c.entries[key] = cacheEntry[T]{val: f.val, err: f.err, expires: c.now().Add(d)}
	}
	c.mu.Unlock()
	close(f.done)
	return f.val, f.err
}

// evictLocked makes room for one entry: expired entries first, then any
// (random credentials must not grow kas's memory without limit).
func (c *cache[T]) evictLocked() {
	now := c.now()
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.max {
			return
		}
		delete(c.entries, k)
	}
}

func (c *cache[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
