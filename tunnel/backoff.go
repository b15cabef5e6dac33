package tunnel

import (
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with full jitter: the n-th wait is drawn
// uniformly from [0, min(Max, Initial*2^n)). Full jitter spreads a thousand
// agents reconnecting after a kas restart over the whole window instead of
// having them knock in lockstep.
type Backoff struct {
	Initial time.Duration // default 100ms
	// Max caps the wait. Default 10s: with full jitter N agents then dial
	// at about N/5 per second while kas is away (cheap refused connects),
	// and all are back within ~10 s of kas returning; a 30 s cap made
	// 1,000 agents take 29 s (test/bench ReconnectStorm).
	Max time.Duration
	// Reset is how long a connection must stay up before the next failure
	// starts again from Initial. Default 10 seconds: long enough that a
	// kas which accepts and then drops every connection still pushes its
	// agents up the ladder, short enough that a kas restarted twice
	// within a minute does not cost its agents seconds.
	Reset time.Duration

	attempt int
}

// Next returns how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	initial, limit := b.Initial, b.Max
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	if limit <= 0 {
		limit = DefaultBackoffMax
	}
	ceiling := limit
	if b.attempt < 32 {
		if c := initial << b.attempt; c > 0 && c < limit {
			ceiling = c
		}
	}
	b.attempt++
	return rand.N(ceiling) + 1
}

// Connected tells the backoff that a connection was up for d: a stable
// connection resets the sequence.
func (b *Backoff) Connected(d time.Duration) {
	reset := b.Reset
	if reset <= 0 {
		reset = DefaultBackoffReset
	}
	if d >= reset {
		b.attempt = 0
	}
}

// Restart starts the sequence again from Initial. agentk calls it when a
// connection ends because kas asked it to move (GoAway): that is kas
// rotating or stopping on purpose, not a failure to back off from.
func (b *Backoff) Restart() {
	b.attempt = 0
}
