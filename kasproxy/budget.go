package kasproxy

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Defaults for the memory budget of responses callers do not read.
const (
	// DefaultWriteTimeout bounds one write of a response to a caller:
	// a caller that reads nothing for this long is cut off.
	DefaultWriteTimeout = time.Minute
	// DefaultStallAfter is how long a write to a caller must block before
	// the response counts as stalled (seen within 1.25 × that: stallWatch).
	DefaultStallAfter = time.Second
	// DefaultMaxBufferedBytesPerUser bounds what one caller's stalled
	// responses may hold in kas (16 streams at the default 16 MiB window).
	DefaultMaxBufferedBytesPerUser = 256 << 20
	// DefaultMaxBufferedBytes bounds it for all callers together, below
	// the chart's 1 GiB memory limit.
	DefaultMaxBufferedBytes = 512 << 20
)

// errStalled ends a response whose caller stopped reading while the
// caller's (or kas's) budget of stalled responses is spent.
var errStalled = errors.New("the caller stopped reading and the budget for unread responses is spent")

// budget accounts for responses whose caller stopped reading. While a
// write to the caller blocks, the tunnel stream behind it fills its
// window (StreamWindow bytes) in kas's memory and holds it: each stalled
// response is charged that much, to its user and to kas. One that would
// go over either budget is ended at once instead, which frees its stream.
type budget struct {
	window, perUser, total int64

	mu     sync.Mutex // guards used and byUser
	used   int64
	byUser map[string]int64
	// metrics may be nil
	metrics *Metrics
}

func newBudget(window, perUser, total int64) *budget {
	return &budget{window: window, perUser: perUser, total: total, byUser: map[string]int64{}}
}

// charge takes one stalled response's window for user, or reports false
// when that would go over a budget.
func (b *budget) charge(user string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+b.window > b.total || b.byUser[user]+b.window > b.perUser {
		return false
	}
	b.used += b.window
	b.byUser[user] += b.window
	if b.metrics != nil {
		b.metrics.StalledBytes.Set(float64(b.used))
	}
	return true
}

func (b *budget) refund(user string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= b.window
	if b.byUser[user] -= b.window; b.byUser[user] <= 0 {
		delete(b.byUser, user)
	}
	if b.metrics != nil {
		b.metrics.StalledBytes.Set(float64(b.used))
	}
}

// Used is what stalled responses are charged now, in total.
func (b *budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// guardedWriter is a caller's ResponseWriter with a deadline on every
// write (and flush) and the budget charged while a write is stalled.
type guardedWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	watch   *stallWatch
	b       *budget
	user    string
	ri      *reqInfo

	mu          sync.Mutex // guards deadlineSet, writing, charged and cut
	deadlineSet time.Time  // when guarded last set the write deadline
	writing     bool
	charged     bool
	cut         bool
}

func (p *Proxy) guard(w http.ResponseWriter, user string, ri *reqInfo) *guardedWriter {
	return &guardedWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: p.cfg.WriteTimeout,
		watch: p.stalls, b: p.budget, user: user, ri: ri}
}

func (w *guardedWriter) Write(p []byte) (int, error) {
	var n int
	err := w.guarded(func() (err error) { n, err = w.ResponseWriter.Write(p); return err })
	return n, err
}

func (w *guardedWriter) Flush() {
	_ = w.guarded(func() error { return w.rc.Flush() })
}

// guarded runs a write with the deadline and, if it blocks past
// stallAfter, with the response charged to the budget.
func (w *guardedWriter) guarded(write func() error) error {
	// A deadline this response set less than timeout/64 ago is kept: the
	// write still gets 63/64 of the timeout at least, and a small
	// answer's two or three writes cost one timer update, not one each.
	now := time.Now()
	w.mu.Lock()
	renew := w.deadlineSet.IsZero() || now.Sub(w.deadlineSet) >= w.timeout/64
	if renew {
		w.deadlineSet = now
	}
	w.writing = true
	w.mu.Unlock()
	if renew {
		_ = w.rc.SetWriteDeadline(now.Add(w.timeout))
	}
	w.watch.begin(w)
	err := write()
	w.watch.end(w)
	w.mu.Lock()
	w.writing = false
	if w.charged {
		w.charged = false
		w.b.refund(w.user)
	}
	cut := w.cut
	w.mu.Unlock()
	if cut && err != nil {
		err = fmt.Errorf("%w: %w", errStalled, err)
	}
	if err != nil && w.ri.err == nil {
		w.ri.err = fmt.Errorf("writing to the caller: %w", err)
	}
	return err
}

// stalled runs when a write has blocked for StallAfter (stallWatch): it charges the
// budget, or, over budget, cuts the response (a past deadline makes the
// blocked write fail, and the proxy then closes the stream).
func (w *guardedWriter) stalled() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.writing || w.charged || w.cut {
		return
	}
	if w.b.charge(w.user) {
		w.charged = true
		return
	}
	w.cut = true
	if w.b.metrics != nil {
		w.b.metrics.StalledEnded.Inc()
	}
	_ = w.rc.SetWriteDeadline(time.Now())
}

func (w *guardedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
