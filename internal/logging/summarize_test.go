package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
)

// fakeClock runs timers when the test advances it.
type fakeClock struct {
	mu     sync.Mutex // guards now and timers
	now    time.Time
	timers map[int]fakeTimer
	next   int
}

type fakeTimer struct {
	at time.Time
	f  func()
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), timers: map[int]fakeTimer{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next++
	c.timers[id] = fakeTimer{at: c.now.Add(d), f: f}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.timers[id]
		delete(c.timers, id)
		return ok
	}
}

// Advance moves the clock by d, running each timer due on the way at its
// time, in order (synchronously, unlike time.AfterFunc).
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		var due []int
		for id, t := range c.timers {
			if !t.at.After(end) {
				due = append(due, id)
			}
		}
		if len(due) == 0 {
			break
		}
		sort.Slice(due, func(i, j int) bool { return c.timers[due[i]].at.Before(c.timers[due[j]].at) })
		t := c.timers[due[0]]
		delete(c.timers, due[0])
		c.now = t.at
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

func jsonLines(t *testing.T, buf *testutil.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

func newSummarized(buf *testutil.Buffer, clock Clock) (*slog.Logger, *Summarizer) {
	s := Summarize(slog.NewJSONHandler(buf, nil), SummarizeOptions{Window: time.Minute, Clock: clock})
	return slog.New(s), s
}

// A refusal retried every 5 s for 3 minutes: the first line, then one
// summary a minute with the count; when it stops, nothing more; when it
// comes back later, it is logged again in full.
func TestSummarizeWindows(t *testing.T) {
	var buf testutil.Buffer
	clock := newFakeClock()
	l, _ := newSummarized(&buf, clock)
	for range 36 { // 3 minutes
		l.Error("kas refused the connection", "reason", "unknown agent token")
		clock.Advance(5 * time.Second)
	}
	clock.Advance(2 * time.Minute) // a window with no repeat ends the summary
	l.Error("kas refused the connection", "reason", "unknown agent token")

	recs := jsonLines(t, &buf)
	var got []string
	for _, r := range recs {
		if r["msg"] != "kas refused the connection" || r["reason"] != "unknown agent token" || r["level"] != "ERROR" {
			t.Errorf("record %v", r)
		}
		if n, ok := r["repeated"]; ok {
			got = append(got, r["time"].(string)[11:19]+" repeated="+jsonNum(n)+" over="+r["over"].(string))
		} else {
			got = append(got, "first") // timed by slog, not the fake clock
		}
	}
	want := []string{
		"first",
		"03:05:05 repeated=11 over=1m0s",
		"03:06:05 repeated=12 over=1m0s",
		"03:07:05 repeated=12 over=1m0s",
		"first",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Records that differ in a key attribute (another agent, another error)
// are not repeats of each other; the local port of a connection and the
// port of "remote" do not make a difference; info lines are never
// summarised; Flush logs what is open.
func TestSummarizeWhatIsARepeat(t *testing.T) {
	var buf testutil.Buffer
	clock := newFakeClock()
	l, s := newSummarized(&buf, clock)
	a, b := l.With("agent", "a"), l.With("agent", "b")
	for i := range 3 {
		a.Warn("Cannot connect to kas", "err", "read tcp 127.0.0.1:"+string(rune('1'+i))+"000->127.0.0.1:8150: connection reset by peer")
		b.Warn("Cannot connect to kas", "err", "read tcp 127.0.0.1:"+string(rune('1'+i))+"000->127.0.0.1:8150: connection reset by peer")
		a.Warn("Cannot connect to kas", "err", "connection refused")
		l.Warn("TLS handshake failed", "remote", "10.0.0.1:"+string(rune('1'+i))+"000", "err", "EOF")
		l.Warn("TLS handshake failed", "remote", "10.0.0.2:4000", "err", "EOF")
		l.Info("Connected to kas")
		l.WithGroup("g").Warn("grouped", "k", "v")
		l.Warn("grouped", "k", "v")
	}
	clock.Advance(10 * time.Second)
	s.Flush()
	count := map[string]int{}
	for _, r := range jsonLines(t, &buf) {
		k := r["msg"].(string)
		for _, key := range []string{"agent", "remote", "err"} {
			if v, ok := r[key]; ok {
				k += " " + key + "=" + v.(string)
			}
		}
		if g, ok := r["g"].(map[string]any); ok { // within the group
			k += " (group)"
			r = g
		}
		if n, ok := r["repeated"]; ok {
			k += " repeated=" + jsonNum(n) + " over=" + r["over"].(string)
		}
		count[k]++
	}
	want := map[string]int{
		"Cannot connect to kas agent=a err=read tcp 127.0.0.1:1000->127.0.0.1:8150: connection reset by peer":                     1,
		"Cannot connect to kas agent=a err=read tcp 127.0.0.1:1000->127.0.0.1:8150: connection reset by peer repeated=2 over=10s": 1,
		"Cannot connect to kas agent=b err=read tcp 127.0.0.1:1000->127.0.0.1:8150: connection reset by peer":                     1,
		"Cannot connect to kas agent=b err=read tcp 127.0.0.1:1000->127.0.0.1:8150: connection reset by peer repeated=2 over=10s": 1,
		"Cannot connect to kas agent=a err=connection refused":                                                                    1,
		"Cannot connect to kas agent=a err=connection refused repeated=2 over=10s":                                                1,
		"TLS handshake failed remote=10.0.0.1:1000 err=EOF":                                                                       1,
		"TLS handshake failed remote=10.0.0.1:1000 err=EOF repeated=2 over=10s":                                                   1,
		"TLS handshake failed remote=10.0.0.2:4000 err=EOF":                                                                       1,
		"TLS handshake failed remote=10.0.0.2:4000 err=EOF repeated=2 over=10s":                                                   1,
		"Connected to kas":                    3,
		"grouped (group)":                     1,
		"grouped (group) repeated=2 over=10s": 1,
		"grouped":                             1,
		"grouped repeated=2 over=10s":         1,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d lines %q, want %d", count[k], k, n)
		}
	}
	for k, n := range count {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %d lines %q", n, k)
		}
	}
	// Flush forgot them: the next is logged in full.
	buf.Reset()
	l.Warn("TLS handshake failed", "remote", "10.0.0.2:4000", "err", "EOF")
	if n := len(jsonLines(t, &buf)); n != 1 {
		t.Errorf("after Flush: %d lines, want 1", n)
	}
}

// A flood of distinct failures is logged line by line once the tracking
// limit is reached: memory stays bounded and nothing is lost.
func TestSummarizeBounded(t *testing.T) {
	var buf testutil.Buffer
	clock := newFakeClock()
	l, s := newSummarized(&buf, clock)
	for i := range 3 * maxTracked {
		l.Warn("Git webhook refused", "path", strings.Repeat("x", i%7)+string(rune(0x4e00+i)))
	}
	if n := len(s.s.byKey); n != maxTracked {
		t.Errorf("tracking %d records, want %d", n, maxTracked)
	}
	if n := len(jsonLines(t, &buf)); n != 3*maxTracked {
		t.Errorf("%d lines, want %d", n, 3*maxTracked)
	}
	clock.Advance(time.Minute) // windows with no repeat: all forgotten
	if n := len(s.s.byKey); n != 0 {
		t.Errorf("tracking %d records after their windows, want 0", n)
	}
}

// Summaries are written by the handler the first record went through, in
// its format.
func TestSummarizeText(t *testing.T) {
	var buf bytes.Buffer
	clock := newFakeClock()
	l := slog.New(Summarize(slog.NewTextHandler(&buf, nil), SummarizeOptions{Clock: clock}))
	for range 4 {
		l.Error("kas refused the connection", "reason", "unknown agent token")
	}
	clock.Advance(DefaultRepeatWindow)
	want := `level=ERROR msg="kas refused the connection" reason="unknown agent token" repeated=3 over=1m0s`
	if !strings.Contains(buf.String(), want) {
		t.Errorf("log:\n%s\nwant a line with %s", buf.String(), want)
	}
}

// Many goroutines logging the same failure while windows end: every
// record is either written or counted in a summary, none twice. Each
// goroutine ends the open window every 50 records (the fake clock runs
// the timer on the goroutine that advances it), so windows end while the
// others are logging, as a real timer's goroutine would.
func TestSummarizeConcurrent(t *testing.T) {
	var buf testutil.Buffer
	clock := newFakeClock()
	s := Summarize(slog.NewJSONHandler(&buf, nil), SummarizeOptions{Clock: clock})
	l := slog.New(s).With("agent", "a")
	const goroutines, each = 8, 300
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				l.Error("kas refused the connection", "reason", "bad token")
				if i%50 == 0 {
					clock.Advance(DefaultRepeatWindow)
				}
			}
		}()
	}
	wg.Wait()
	s.Flush()
	total, lines := 0, 0
	for _, r := range jsonLines(t, &buf) {
		lines++
		if n, ok := r["repeated"].(float64); ok {
			total += int(n)
		} else {
			total++
		}
	}
	if total != goroutines*each {
		t.Errorf("%d records accounted for in %d lines, want %d", total, lines, goroutines*each)
	}
	if lines >= goroutines*each/2 {
		t.Errorf("%d lines for %d records: not summarised", lines, goroutines*each)
	}
}
