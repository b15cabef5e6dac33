package kasproxy

import (
	"sync"
	"time"
)

// stallWatch finds writes to callers that have blocked for `after`, for
// the budget, with one goroutine for every write in progress instead of
// a timer per write. A timer armed per write was the earliest timer in
// the process each time, and arming it woke the network poller's thread:
// two thread wake-ups per proxied GET. The goroutine runs while writes
// are in progress, looks every after/4 (a stall is seen between after
// and 1.25 × after), and exits once none is.
type stallWatch struct {
	after time.Duration

	mu      sync.Mutex
	active  map[*guardedWriter]time.Time // writes in progress, since when
	running bool
}

func newStallWatch(after time.Duration) *stallWatch {
	return &stallWatch{after: after, active: map[*guardedWriter]time.Time{}}
}

// begin notes a write starting.
func (s *stallWatch) begin(w *guardedWriter) {
	now := time.Now()
	s.mu.Lock()
	s.active[w] = now
	if !s.running {
		s.running = true
		go s.run()
	}
	s.mu.Unlock()
}

// end notes the write over.
func (s *stallWatch) end(w *guardedWriter) {
	s.mu.Lock()
	delete(s.active, w)
	s.mu.Unlock()
}

func (s *stallWatch) run() {
	tick := max(s.after/4, time.Millisecond)
	t := time.NewTimer(tick)
	defer t.Stop()
	var stalled []*guardedWriter
	for {
		<-t.C
		now := time.Now()
		s.mu.Lock()
		if len(s.active) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		for w, since := range s.active {
			if now.Sub(since) >= s.after {
				stalled = append(stalled, w)
				delete(s.active, w) // charged once per write
			}
		}
		s.mu.Unlock()
		for i, w := range stalled {
			w.stalled()
			stalled[i] = nil
		}
		stalled = stalled[:0]
		t.Reset(tick)
	}
}
