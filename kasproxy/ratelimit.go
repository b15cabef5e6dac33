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
	// now is the clock; tests step a fake one through the window.
	now func() time.Time
}

type failures struct {
	count int
	since time.Time
}

// NewFailureLimiter makes a limiter.
func NewFailureLimiter(burst int, window time.Duration) *FailureLimiter {
	return &FailureLimiter{burst: burst, window: window, clients: map[string]*failures{}, now: time.Now}
}

// Allow reports whether addr may try to authenticate now.
func (l *FailureLimiter) Allow(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.clients[addr]
	if f == nil {
		return true
	}
	if l.now().Sub(f.since) > l.window {
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
	if f == nil || l.now().Sub(f.since) > l.window {
		if len(l.clients) >= maxTrackedClients {
			// Under a flood of addresses, forget rather than grow.
			clear(l.clients)
		}
		f = &failures{since: l.now()}
		l.clients[addr] = f
	}
	f.count++
}
