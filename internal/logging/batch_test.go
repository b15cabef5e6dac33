package logging

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
)

// writes records each Write the BatchWriter makes.
type writes struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, string(p))
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *writes) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

func waitWrites(t *testing.T, w *writes, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := w.get()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A window's first burst lines go out at once; the lines after them are
// held and leave together, in order, in one write.
func TestBatchWriterHoldsAFlood(t *testing.T) {
	w := &writes{}
	b := NewBatchWriter(w, time.Hour, 3)
	for _, l := range []string{"a", "b", "c"} {
		fmt.Fprintln(b, l)
	}
	if got := w.get(); len(got) != 3 || got[2] != "c\n" {
		t.Fatalf("the burst's lines: writes %q, want each written at once", got)
	}
	var want strings.Builder
	for i := range 100 {
		fmt.Fprintf(b, "line %d\n", i)
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if got := w.get(); len(got) != 3 {
		t.Fatalf("the flood was written before the window ended: %d writes", len(got))
	}
	b.Flush()
	if got := w.get(); len(got) != 4 || got[3] != want.String() {
		t.Errorf("the flood's write:\n%q\nwant the 100 lines in order, in one write", got[3:])
	}
}

// The window's end writes what is held by itself; a line after a quiet
// spell goes out at once again.
func TestBatchWriterWindowEnds(t *testing.T) {
	w := &writes{}
	b := NewBatchWriter(w, 50*time.Millisecond, 1)
	fmt.Fprintln(b, "first")
	fmt.Fprintln(b, "held")
	if got := waitWrites(t, w, 2); len(got) != 2 || got[1] != "held\n" {
		t.Fatalf("writes %q: the held line was not written within 5s of a 50ms window", got)
	}
	time.Sleep(60 * time.Millisecond)
	fmt.Fprintln(b, "later")
	if got := w.get(); len(got) != 3 || got[2] != "later\n" {
		t.Errorf("a line after a quiet spell: writes %q, want it written at once", got)
	}
}

// Under a steady flood the first line after a window's end writes what
// the window held, with itself, and the next window holds from its
// start: one write a window and no timer (the timer, later, is for a
// flood that stops).
func TestBatchWriterFloodFlushesByNextLine(t *testing.T) {
	w := &writes{}
	b := NewBatchWriter(w, 50*time.Millisecond, 1)
	fmt.Fprintln(b, "a")
	fmt.Fprintln(b, "b") // held
	time.Sleep(60 * time.Millisecond)
	fmt.Fprintln(b, "c")
	got := w.get()
	if len(got) != 2 || got[1] != "b\nc\n" {
		t.Fatalf("after a line past the window's end: writes %q, want [a b+c]", got)
	}
	fmt.Fprintln(b, "d")
	if got := w.get(); len(got) != 2 {
		t.Fatalf("a line right after: writes %q, want it held", got)
	}
	if got := waitWrites(t, w, 3); len(got) != 3 || got[2] != "d\n" {
		t.Errorf("writes %q: the held line was not written when the flood stopped", got)
	}
}

// A burst larger than maxBatch is written when it reaches it, not held.
func TestBatchWriterBoundsWhatItHolds(t *testing.T) {
	w := &writes{}
	b := NewBatchWriter(w, time.Hour, 1)
	line := strings.Repeat("x", 1023) + "\n"
	for range 1 + maxBatch/len(line) {
		b.Write([]byte(line))
	}
	got := w.get()
	if len(got) != 2 || len(got[1]) != maxBatch {
		lens := make([]int, len(got))
		for i, c := range got {
			lens[i] = len(c)
		}
		t.Fatalf("writes of %v bytes, want 1024 then %d (a full batch)", lens, maxBatch)
	}
	b.Flush()
	if got := w.get(); len(got) != 2 {
		t.Errorf("Flush with nothing held wrote %d bytes", len(got[len(got)-1]))
	}
}

// A warning or an error through New's handler leaves before the call
// returns, with the info lines held before it, in order.
func TestWarningFlushesHeldLines(t *testing.T) {
	w := &writes{}
	b := NewBatchWriter(w, time.Hour, 1)
	l := slog.New(flushOnWarn{slog.NewTextHandler(b, nil), b})
	l.Info("one")
	l.Info("two") // held
	l.With("agent", "a").Warn("three")
	got := strings.Join(w.get(), "")
	if n := strings.Count(got, "\n"); n != 3 {
		t.Fatalf("written when Warn returned: %d lines, want 3:\n%s", n, got)
	}
	for i, want := range []string{"msg=one", "msg=two", "msg=three agent=a"} {
		if line := strings.Split(got, "\n")[i]; !strings.Contains(line, want) {
			t.Errorf("line %d: %q, want %s", i, line, want)
		}
	}
}

// A failed write of held lines is returned by the next Write, whose own
// line is not lost with it.
func TestBatchWriterReportsAFailedFlush(t *testing.T) {
	w := &writes{}
	b := NewBatchWriter(w, time.Hour, 1)
	b.Write([]byte("a\n"))
	b.Write([]byte("b\n"))
	w.err = errors.New("disk full")
	b.Flush()
	w.mu.Lock()
	w.err = nil // the disk has room again
	w.mu.Unlock()
	if _, err := b.Write([]byte("c\n")); err == nil || err.Error() != "disk full" {
		t.Errorf("Write after a failed flush: %v, want disk full", err)
	}
	b.Flush()
	if got := w.get(); got[len(got)-1] != "c\n" {
		t.Errorf("writes %q: the line after the failure was lost", got)
	}
}

// New's logger writes the first DefaultBurst lines of a window when each
// call returns, holds the next, and flush writes it.
func TestNewWritesAtOnceWhenQuiet(t *testing.T) {
	var buf testutil.Buffer
	l, flush, err := New(&buf, FormatJSON, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	for i := range DefaultBurst {
		l.Info("Proxied request", "n", i)
		if n := strings.Count(buf.String(), "\n"); n != i+1 {
			t.Fatalf("after line %d returned: %d lines written, want them all", i+1, n)
		}
	}
	// The next is held (unless the 100 ms window passed meanwhile, on a
	// stalled machine); flush writes it either way.
	l.Info("Proxied request", "n", DefaultBurst)
	flush()
	if n := strings.Count(buf.String(), "\n"); n != DefaultBurst+1 {
		t.Errorf("after flush: %d lines, want %d:\n%s", n, DefaultBurst+1, buf.String())
	}
}
