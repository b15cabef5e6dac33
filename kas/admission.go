package kas

import (
	"sync"
	"time"

	"kubetunnel/tunnel"
)

// admissions counts agent connections that passed authentication but are
// not registered yet (their handshake answer and session setup are in
// flight), so that concurrent handshakes cannot all pass the
// per-agent connection cap on the same count. A reservation ends when its
// session registers, or expires after the handshake timeout if the
// handshake failed after authentication.
type admissions struct {
	mu      sync.Mutex
	pending map[string][]time.Time // agent key → when each was admitted
}

// admit reserves a connection for key if registered()+pending is below
// limit; it returns the count it compared. registered is read under the
// lock that registration's release takes, so a session is counted either
// there or as pending, never neither.
func (a *admissions) admit(key string, registered func() int, limit int, now time.Time) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pending[key]
	for len(p) > 0 && now.Sub(p[0]) > tunnel.DefaultHandshakeTimeout {
		p = p[1:]
	}
	n := registered() + len(p)
	if n >= limit {
		a.set(key, p)
		return n, false
	}
	a.set(key, append(p, now))
	return n, true
}

// registered ends key's oldest reservation: its session is counted by the
// session registry now (the caller added it there first, so the cap is
// never under-counted).
func (a *admissions) registered(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.pending[key]; len(p) > 0 {
		a.set(key, p[1:])
	}
}

func (a *admissions) set(key string, p []time.Time) {
	if len(p) == 0 {
		delete(a.pending, key)
		return
	}
	if a.pending == nil {
		a.pending = map[string][]time.Time{}
	}
	a.pending[key] = p
}
