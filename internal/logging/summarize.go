package logging

import (
	"context"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"
)

// DefaultRepeatWindow is how long Summarize counts the repeats of a record
// before it logs one summary line for them.
const DefaultRepeatWindow = time.Minute

// maxTracked bounds how many distinct records Summarize remembers at once:
// past it, new records are logged as they come, untracked, so a flood of
// distinct lines costs no memory.
const maxTracked = 1024

// Clock is the time Summarize reads and the timers it sets; tests pass a
// fake one.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d; stop cancels that
	// and reports whether it did.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// SummarizeOptions tune Summarize; the zero value is the default.
type SummarizeOptions struct {
	// Window: DefaultRepeatWindow when zero.
	Window time.Duration
	// Clock: the real clock when nil.
	Clock Clock
	// MinLevel: records below it pass through as they are; Warn when
	// nil, since an info line is an event (a connection, a new commit)
	// and a warning or an error a failure.
	MinLevel slog.Leveler
}

// Summarize wraps h so that a warning or an error repeating within a
// window is logged once: the first is passed on at once, the repeats are
// counted, and when the window ends one line with the first's level,
// message and attributes plus repeated=N and over=DURATION says how many
// there were. While it keeps repeating, each further window ends with
// such a line: a failure retried forever costs one line a window. Records
// that differ are summarised apart (the same failure of two agents, say),
// so a summary may come after lines of other records.
//
// Records are the same when level, message and attributes (including
// those of Logger.With) are equal, except that keys that differ between
// tries of the same failure are compared loosely: "remote" by host only,
// and a local "ADDR:PORT->" in any value without the port.
//
// Call Flush before exiting to log the summaries of open windows.
func Summarize(h slog.Handler, opts SummarizeOptions) *Summarizer {
	if opts.MinLevel == nil {
		opts.MinLevel = slog.LevelWarn
	}
	if opts.Window <= 0 {
		opts.Window = DefaultRepeatWindow
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	return &Summarizer{inner: h, s: &summaries{
		window: opts.Window, clock: opts.Clock, min: opts.MinLevel,
		byKey: map[string]*summary{},
	}}
}

// Summarizer is the slog.Handler Summarize returns.
type Summarizer struct {
	inner  slog.Handler
	prefix string // key of the attributes and groups of WithAttrs/WithGroup
	s      *summaries
}

var _ slog.Handler = (*Summarizer)(nil)

// summaries is shared by a Summarizer and the handlers derived from it.
type summaries struct {
	window time.Duration
	clock  Clock
	min    slog.Leveler

	mu    sync.Mutex          // guards byKey
	byKey map[string]*summary // by the record's identity
}

// summary is one record being summarised.
type summary struct {
	key     string
	h       slog.Handler // the handler the first record went to
	first   slog.Record  // the first record, repeated in the summary line
	start   time.Time    // when the current window started
	repeats int          // records suppressed in the current window
	stop    func() bool  // cancels the window's timer
}

func (h *Summarizer) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *Summarizer) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		writeAttr(&b, "", a)
	}
	return &Summarizer{inner: h.inner.WithAttrs(attrs), prefix: b.String(), s: h.s}
}

func (h *Summarizer) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &Summarizer{inner: h.inner.WithGroup(name), prefix: h.prefix + "\x00g:" + name, s: h.s}
}

func (h *Summarizer) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.s.min.Level() {
		return h.inner.Handle(ctx, r)
	}
	var b strings.Builder
	b.WriteString(h.prefix + "\x00" + r.Level.String() + "\x00" + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, "", a)
		return true
	})
	key := b.String()

	s := h.s
	s.mu.Lock()
	if e, ok := s.byKey[key]; ok {
		e.repeats++
		s.mu.Unlock()
		return nil
	}
	if len(s.byKey) < maxTracked {
		e := &summary{key: key, h: h.inner, first: r.Clone(), start: s.clock.Now()}
		s.byKey[key] = e
		e.stop = s.clock.AfterFunc(s.window, func() { s.windowEnded(e) })
	}
	s.mu.Unlock()
	return h.inner.Handle(ctx, r)
}

// windowEnded logs e's summary if it repeated, and then watches it for
// another window; if it did not, it forgets it.
func (s *summaries) windowEnded(e *summary) {
	s.mu.Lock()
	if s.byKey[e.key] != e { // ended already by Flush
		s.mu.Unlock()
		return
	}
	n := e.repeats
	now := s.clock.Now()
	over := now.Sub(e.start)
	if n == 0 {
		s.removeLocked(e)
	} else {
		e.repeats, e.start = 0, now
		e.stop = s.clock.AfterFunc(s.window, func() { s.windowEnded(e) })
	}
	s.mu.Unlock()
	if n > 0 {
		_ = e.emit(context.Background(), now, n, over)
	}
}

// removeLocked forgets e and stops its timer; s.mu must be held.
func (s *summaries) removeLocked(e *summary) {
	e.stop()
	delete(s.byKey, e.key)
}

// Flush logs the summary of every open window and forgets them all.
func (h *Summarizer) Flush() {
	s := h.s
	type pending struct {
		e    *summary
		n    int
		over time.Duration
	}
	var out []pending
	s.mu.Lock()
	now := s.clock.Now()
	for _, e := range s.byKey {
		if e.repeats > 0 {
			out = append(out, pending{e, e.repeats, now.Sub(e.start)})
		}
		s.removeLocked(e)
	}
	s.mu.Unlock()
	for _, p := range out {
		_ = p.e.emit(context.Background(), now, p.n, p.over)
	}
}

// emit logs the summary line: the first record again, at now, with the
// count of repeats and the time they took.
func (e *summary) emit(ctx context.Context, now time.Time, n int, over time.Duration) error {
	r := slog.NewRecord(now, e.first.Level, e.first.Message, 0)
	e.first.Attrs(func(a slog.Attr) bool {
		r.AddAttrs(a)
		return true
	})
	r.AddAttrs(slog.Int("repeated", n), slog.String("over", roundDuration(over).String()))
	return e.h.Handle(ctx, r)
}

func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// localPort matches the local end of a connection in an error
// ("read tcp 127.0.0.1:51234->127.0.0.1:8150: …"), different on every try.
var localPort = regexp.MustCompile(`:\d+->`)

// writeAttr appends a's identity to b: what makes two records the same.
func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := group + a.Key + "."
		for _, ga := range v.Group() {
			writeAttr(b, g, ga)
		}
		return
	}
	s := v.String()
	if a.Key == "remote" {
		if host, _, err := net.SplitHostPort(s); err == nil {
			s = host
		}
	}
	s = localPort.ReplaceAllString(s, ":*->")
	b.WriteString("\x00")
	b.WriteString(group)
	b.WriteString(a.Key)
	b.WriteString("=")
	b.WriteString(s)
}
