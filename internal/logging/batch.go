package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// DefaultFlushDelay is the window in which a BatchWriter writes up to
// DefaultBurst lines at once and holds the rest (for at most twice as
// long).
const DefaultFlushDelay = 100 * time.Millisecond

// DefaultBurst is how many lines a window writes at once (20 a second):
// what a process logging at a human rate logs in a row (a connection and
// its first configuration), far fewer than kas's audit lines under load.
// Each write is a system call, which on a virtual machine costs more
// than formatting the line: with 16, kas's audit line at 150 proxied
// GETs a second was a write per request and 2 % of kas+agentk's CPU per
// GET (docs/benchmarks.md, "The audit line's write").
const DefaultBurst = 2

// maxBatch is what a BatchWriter holds at most: more is written at once.
const maxBatch = 64 << 10

// BatchWriter writes log lines to w, one system call for a flood of
// lines instead of one per line. A window of delay starts with the first
// line after the last one ended; its first burst lines are written as
// they come, so a process that logs at a human rate logs as an
// unbuffered one does (an operator tailing the log, a test reading it
// right after a few requests), and the lines after those are held. What
// a window held is written with the first line after the window's end,
// which starts a window that holds from its start, or, if no line comes,
// delay after the window's end; or as soon as 64 KiB are held. Under a
// steady flood (kas's audit line per proxied request, hundreds a second)
// that is one write per window rather than one per request, and no
// timer fires. What is held is lost if the process is killed (SIGKILL,
// OOM): at most 2×delay's worth of lines. Flush writes what is held;
// New's handler flushes before it returns from every warning and error,
// so the lines that explain a failure are never the ones held.
type BatchWriter struct {
	w     io.Writer
	delay time.Duration
	burst int

	mu      sync.Mutex
	buf     []byte
	window  time.Time   // when the current window started
	written int         // lines written at once in it
	timer   *time.Timer // armed while buf holds lines
	err     error       // the last held write's; returned by the next Write
}

// NewBatchWriter returns a BatchWriter on w; delay <= 0 or burst <= 0
// writes every line at once.
func NewBatchWriter(w io.Writer, delay time.Duration, burst int) *BatchWriter {
	if delay <= 0 || burst <= 0 {
		delay, burst = 0, 0
	}
	return &BatchWriter{w: w, delay: delay, burst: burst}
}

// Write takes one line (slog's handlers write a record with one Write).
// A failed write of held lines is returned by the next Write, which
// still takes its own line: one failure (a full disk freed since) does
// not also lose the line after it.
func (b *BatchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	held := b.err
	b.err = nil
	n, err := b.writeLocked(p)
	if err == nil && held != nil {
		return n, held
	}
	return n, err
}

func (b *BatchWriter) writeLocked(p []byte) (int, error) {
	if b.delay == 0 {
		return b.w.Write(p)
	}
	now := time.Now()
	over := now.Sub(b.window) >= b.delay
	if over && len(b.buf) > 0 {
		// Still a flood: what the window held leaves with this line, and
		// the next window holds from its start.
		b.buf = append(b.buf, p...)
		b.flushLocked()
		b.window, b.written = now, b.burst
		return len(p), nil
	}
	if over {
		b.window, b.written = now, 0
	}
	if len(b.buf) == 0 && b.written < b.burst {
		b.written++
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	switch {
	case len(b.buf) >= maxBatch:
		b.flushLocked()
	case b.timer == nil:
		// Late, so that under a steady flood the next line writes what
		// is held and the timer never fires: a timer firing in an idle
		// process wakes a thread for it.
		b.timer = time.AfterFunc(2*b.delay-now.Sub(b.window), b.Flush)
	}
	return len(p), nil
}

// Flush writes what is held.
func (b *BatchWriter) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *BatchWriter) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err
	}
	if cap(b.buf) > maxBatch {
		b.buf = nil // a burst's buffer is not kept for a quiet process
	} else {
		b.buf = b.buf[:0]
	}
}

// flushOnWarn writes what a BatchWriter holds after each record at Warn
// or above has been handled, so a warning or an error is on its way out
// when the call that logged it returns.
type flushOnWarn struct {
	slog.Handler
	b *BatchWriter
}

func (h flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.b.Flush()
	}
	return err
}

func (h flushOnWarn) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushOnWarn{h.Handler.WithAttrs(attrs), h.b}
}

func (h flushOnWarn) WithGroup(name string) slog.Handler {
	return flushOnWarn{h.Handler.WithGroup(name), h.b}
}
