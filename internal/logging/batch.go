package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// DefaultFlushDelay is how long a log line that follows another closely
// may wait before it is written.
const DefaultFlushDelay = 100 * time.Millisecond

// maxBatch is what a BatchWriter holds at most: more is written at once.
const maxBatch = 64 << 10

// BatchWriter writes log lines to w, one system call for a burst of
// lines instead of one per line. A line that comes when nothing was
// written for delay goes out at once, so a quiet process logs as an
// unbuffered one does (an operator tailing the log, a test reading it
// after one action); lines that follow it within delay are held and
// written together delay after that write, or when 64 KiB are held.
// Under a steady load (kas's audit line per proxied request) that is one
// write per delay rather than one per request. What is held is lost if
// the process is killed (SIGKILL, OOM): at most delay's worth of lines.
// Flush writes what is held; New's handler flushes before it returns from
// every warning and error, so the lines that explain a failure are never
// the ones held.
type BatchWriter struct {
	w     io.Writer
	delay time.Duration

	mu    sync.Mutex
	buf   []byte
	last  time.Time   // when w was last written
	timer *time.Timer // armed while buf holds lines
	err   error       // the last write's; returned by the next Write
}

// NewBatchWriter returns a BatchWriter on w; delay <= 0 writes every
// line at once.
func NewBatchWriter(w io.Writer, delay time.Duration) *BatchWriter {
	return &BatchWriter{w: w, delay: delay}
}

// Write takes one line (slog's handlers write a record with one Write).
func (b *BatchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.err; err != nil {
		b.err = nil
		return 0, err
	}
	now := time.Now()
	if len(b.buf) == 0 && (b.delay <= 0 || now.Sub(b.last) >= b.delay) {
		b.last = now
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	switch {
	case len(b.buf) >= maxBatch:
		b.flushLocked(now)
	case b.timer == nil:
		b.timer = time.AfterFunc(b.delay-now.Sub(b.last), b.Flush)
	}
	return len(p), nil
}

// Flush writes what is held.
func (b *BatchWriter) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked(time.Now())
}

func (b *BatchWriter) flushLocked(now time.Time) {
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
	b.last = now
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
