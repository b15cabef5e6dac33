package kasproxy

import (
	"sync"
	"time"
)

// Defaults for failed-authentication limiting.
const (
	DefaultAuthFailureBurst  = 20
	DefaultAuthFailureWindow = time.Minute
	maxTrackedClients        = 100_000
)

// FailureLimiter refuses a client address that failed authentication more
// than burst times within window, to slow down token guessing.
type FailureLimiter struct {
	burst  int
	window time.Duration

	mu      sync.Mutex // guards clients
	clients map[string]*failures
}

type failures struct {
	count int
	since time.Time
}

// NewFailureLimiter makes a limiter.
func NewFailureLimiter(burst int, window time.Duration) *FailureLimiter {
	return &FailureLimiter{burst: burst, window: window, clients: map[string]*failures{}}
}

// Allow reports whether addr may try to authenticate now.
func (l *FailureLimiter) Allow(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.clients[addr]
	if f == nil {
		return true
	}
	if time.Since(f.since) > l.window {
		delete(l.clients, addr)
		return true
	}
	return f.count < l.burst
}

// Fail records a failed authentication from addr.
func (l *FailureLimiter) Fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.clients[addr]
	if f == nil || time.Since(f.since) > l.window {
		if len(l.clients) >= maxTrackedClients {
			// Under a flood of addresses, forget rather than grow.
			clear(l.clients)
		}
		f = &failures{since: time.Now()}
		l.clients[addr] = f
	}
	f.count++
}
