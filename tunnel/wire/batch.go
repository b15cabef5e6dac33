package wire

import (
	"net/http"
	"strings"
	"time"
)

// BatchFlushDelay bounds how long a flush of a batched answer (see
// Batchable) waits for more of the body.
const BatchFlushDelay = 5 * time.Millisecond

// Batchable says whether an answer of unknown length to r (chunked: the
// API server answers a large list or object that way) may be sent in
// full buffers, with a flush at most BatchFlushDelay after the first,
// instead of a flush per write. The API server writes a list as fast as
// it encodes it, so a flush per write only costs a frame, a chunk and a
// system call per read. Only GETs of objects and lists qualify: a watch,
// a log (follow), a proxied service, or a query that mentions either
// keeps a flush per write, whatever else it says.
func Batchable(r *http.Request) bool {
	if r.Method != http.MethodGet || strings.Contains(r.URL.Path, "/watch/") {
		return false
	}
	if q := r.URL.RawQuery; strings.Contains(q, "watch") || strings.Contains(q, "follow") {
		return false
	}
	for s := range strings.SplitSeq(r.URL.Path, "/") {
		if s == "log" || s == "proxy" || strings.HasPrefix(s, "proxy:") {
			return false
		}
	}
	return true
}

// BatchFlush decides a batched answer's flushes: the first goes at once
// (the caller sees the answer start as soon as before), later ones at
// most BatchFlushDelay after they were asked for, so an answer that
// comes in a burst leaves in full buffers and one that pauses is still
// sent within the delay. Its user serialises every call, and its writes,
// with a lock of its own, which the timer's callback takes too. The
// zero value is ready.
type BatchFlush struct {
	timer   *time.Timer
	pending bool
	stopped bool
}

// Request says whether a flush asked for now goes at once (true) or is
// left to the timer, which calls due (it must flush if Due says so).
func (b *BatchFlush) Request(due func()) bool {
	switch {
	case b.stopped:
		return true
	case b.pending:
		return false
	case b.timer == nil:
		b.timer = time.AfterFunc(time.Hour, due)
		b.timer.Stop()
		return true
	default:
		b.pending = true
		b.timer.Reset(BatchFlushDelay)
		return false
	}
}

// Due reports whether the timer's flush should still happen, and clears it.
func (b *BatchFlush) Due() bool {
	ok := b.pending && !b.stopped
	b.pending = false
	return ok
}

// Stop ends the timer; from then on every flush goes at once.
func (b *BatchFlush) Stop() {
	b.stopped = true
	if b.timer != nil {
		b.timer.Stop()
	}
}
