package gitrepo

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
)

const waitTimeout = 10 * time.Second

func waitNotified(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("no notification after %s", what)
	}
}

func assertQuiet(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("notified after %s", what)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestSubscribe(t *testing.T) {
	src := newSource(t)
	src.commit(map[string]string{"a": "1"})
	c := newCache(t, Repository{ID: "r", URL: "file://" + src.dir})
	ch, cancel := c.Subscribe("r")
	other, cancelOther := c.Subscribe("r")
	defer cancelOther()

	fetch(t, c, "r")
	waitNotified(t, ch, "the first fetch")
	waitNotified(t, other, "the first fetch")
	fetch(t, c, "r")
	assertQuiet(t, ch, "a fetch without a change")

	// Changes coalesce while the subscriber is busy.
	src.commit(map[string]string{"a": "2"})
	fetch(t, c, "r")
	src.commit(map[string]string{"a": "3"})
	fetch(t, c, "r")
	waitNotified(t, ch, "two changes")
	assertQuiet(t, ch, "two changes, read once")

	cancel()
	src.commit(map[string]string{"a": "4"})
	fetch(t, c, "r")
	assertQuiet(t, ch, "cancel")

	unknown, cancelUnknown := c.Subscribe("nope")
	defer cancelUnknown()
	assertQuiet(t, unknown, "subscribing to an unknown repository")
}

func startPoller(t *testing.T, c *Cache, cfg PollerConfig) *Poller {
	t.Helper()
	p := NewPoller(c, cfg, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait() // Run returns only when its fetches have stopped
	})
	return p
}

func TestPollerPolls(t *testing.T) {
	src := newSource(t)
	src.commit(map[string]string{"a": "1"})
	c := newCache(t, Repository{ID: "r", URL: "file://" + src.dir})
	ch, cancel := c.Subscribe("r")
	defer cancel()
	startPoller(t, c, PollerConfig{Period: 20 * time.Millisecond})

	waitNotified(t, ch, "the first poll")
	commit := src.commit(map[string]string{"a": "2"})
	waitNotified(t, ch, "a commit")
	if got := resolve(t, c, "r", Ref{}); got != commit {
		t.Errorf("after a poll: %s, want %s", got, commit)
	}
}

func TestPollerTrigger(t *testing.T) {
	a, b := newSource(t), newSource(t)
	a.commit(map[string]string{"a": "1"})
	b.commit(map[string]string{"b": "1"})
	c := newCache(t,
		Repository{ID: "a", URL: "file://" + a.dir},
		Repository{ID: "b", URL: "file://" + b.dir},
	)
	chA, cancelA := c.Subscribe("a")
	defer cancelA()
	chB, cancelB := c.Subscribe("b")
	defer cancelB()
	// A period long enough that only triggers fetch after the first poll.
	p := startPoller(t, c, PollerConfig{Period: time.Hour})
	waitNotified(t, chA, "the first poll of a")
	waitNotified(t, chB, "the first poll of b")

	commit := a.commit(map[string]string{"a": "2"})
	b.commit(map[string]string{"b": "2"})
	if err := p.Trigger("a"); err != nil {
		t.Fatal(err)
	}
	waitNotified(t, chA, "a trigger")
	if got := resolve(t, c, "a", Ref{}); got != commit {
		t.Errorf("after a trigger: %s, want %s", got, commit)
	}
	assertQuiet(t, chB, "a trigger of another repository")

	if err := p.Trigger("nope"); !errors.Is(err, ErrUnknownRepository) {
		t.Errorf("Trigger of an unknown repository: %v", err)
	}
}

func TestPollerStopsOnCancel(t *testing.T) {
	src := newSource(t)
	src.commit(map[string]string{"a": "1"})
	c := newCache(t, Repository{ID: "r", URL: "file://" + src.dir})
	var fetches atomic.Int32
	p := NewPoller(c, PollerConfig{Period: time.Millisecond, OnFetch: func(string, time.Duration, error) { fetches.Add(1) }}, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testutil.Eventually(t, waitTimeout, "a few polls", func() bool { return fetches.Load() >= 3 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
	if err := p.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestPollerWithoutRepositories(t *testing.T) {
	p := NewPoller(newCache(t), PollerConfig{}, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-done:
		t.Fatal("Run returned before cancel")
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestPollerOnFetch(t *testing.T) {
	src := newSource(t)
	src.commit(map[string]string{"a": "1"})
	c := newCache(t,
		Repository{ID: "ok", URL: "file://" + src.dir},
		Repository{ID: "gone", URL: "file://" + t.TempDir() + "/missing"},
	)
	type report struct {
		d   time.Duration
		err error
	}
	var mu sync.Mutex
	reports := map[string][]report{}
	p := startPoller(t, c, PollerConfig{Period: time.Hour, OnFetch: func(id string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		reports[id] = append(reports[id], report{d, err})
	}})
	get := func(id string) []report {
		mu.Lock()
		defer mu.Unlock()
		return append([]report(nil), reports[id]...)
	}
	testutil.Eventually(t, waitTimeout, "OnFetch calls for the first polls", func() bool { return len(get("ok")) >= 1 && len(get("gone")) >= 1 })
	if r := get("ok")[0]; r.err != nil || r.d <= 0 {
		t.Errorf("ok: %+v, want a duration and no error", r)
	}
	if r := get("gone")[0]; r.err == nil {
		t.Errorf("gone: %+v, want an error", r)
	}
	// A triggered fetch is reported too.
	if err := p.Trigger("ok"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitTimeout, "an OnFetch call for a triggered fetch", func() bool { return len(get("ok")) >= 2 })
}
