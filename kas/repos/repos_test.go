package repos

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"kubetunnel/gitops/gitrepo"
	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A set polls repositories[], and an update (a config reload) adds,
// changes and removes repositories while subscribers keep hearing about
// the ids they subscribed to; every fetch is timed in the metrics.
func TestSetUpdate(t *testing.T) {
	a, b := testutil.NewGitRepo(t), testutil.NewGitRepo(t)
	aCommit := a.Commit("a", map[string]string{"a.yaml": "a: 1\n"})
	bCommit := b.Commit("b", map[string]string{"b.yaml": "b: 1\n"})
	reg := prometheus.NewRegistry()
	s, err := New(Config{
		CacheDir:     filepath.Join(t.TempDir(), "cache"),
		Repositories: []gitrepo.Repository{{ID: "group/a", URL: a.URL()}},
		PollPeriod:   50 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
		Metrics:      reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		s.Close()
	}()

	resolves := func(id, want string) func() bool {
		return func() bool { c, err := s.Resolve(id, gitrepo.Ref{}); return err == nil && c == want }
	}
	testutil.Eventually(t, 10*time.Second, "group/a fetched", resolves("group/a", aCommit))
	if !s.IsConfigured("group/a") || s.IsConfigured("group/b") || s.MirrorsGitLab() {
		t.Fatalf("IsConfigured a=%v b=%v, MirrorsGitLab=%v", s.IsConfigured("group/a"), s.IsConfigured("group/b"), s.MirrorsGitLab())
	}
	if err := s.Mirror("group/a"); err == nil {
		t.Error("Mirror without GitLab: no error")
	}

	// group/a now points at b's repository, group/b is new.
	notified, unsubscribe := s.Subscribe("group/a")
	defer unsubscribe()
	ch, err := s.Update([]gitrepo.Repository{{ID: "group/a", URL: b.URL()}, {ID: "group/b", URL: b.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.Added, []string{"group/b"}) || !slices.Equal(ch.Changed, []string{"group/a"}) || len(ch.Removed) != 0 {
		t.Errorf("update: %+v, want group/b added, group/a changed", ch)
	}
	select {
	case <-notified:
	case <-time.After(5 * time.Second):
		t.Error("a subscriber of group/a was not told that its repository changed")
	}
	testutil.Eventually(t, 10*time.Second, "group/a fetched from its new URL", resolves("group/a", bCommit))
	testutil.Eventually(t, 10*time.Second, "group/b fetched", resolves("group/b", bCommit))
	if ids := webhookIDs(s); !slices.Equal(ids, []string{"group/a", "group/b"}) {
		t.Errorf("webhook repositories %v", ids)
	}

	ch, err = s.Update([]gitrepo.Repository{{ID: "group/b", URL: b.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.Removed, []string{"group/a"}) || len(ch.Added)+len(ch.Changed) != 0 {
		t.Errorf("update: %+v, want group/a removed", ch)
	}
	if _, err := s.Resolve("group/a", gitrepo.Ref{}); !errors.Is(err, gitrepo.ErrUnknownRepository) {
		t.Errorf("removed repository resolves: %v", err)
	}
	if err := s.Trigger("group/a"); !errors.Is(err, gitrepo.ErrUnknownRepository) {
		t.Errorf("trigger of a removed repository: %v", err)
	}

	// A repository that cannot be opened changes nothing.
	if _, err := s.Update([]gitrepo.Repository{{ID: "group/b", URL: b.URL()}, {ID: "bad", URL: "ftp://x"}}); err == nil {
		t.Error("update with a bad URL: no error")
	}
	if !s.Has("group/b") || s.Has("bad") {
		t.Error("a failed update changed the set")
	}

	m := metrics.Gather(t, reg)
	if n := m.Get("kas_git_poll_duration_seconds", "repository", "group/b"); n == 0 {
		t.Error("no fetch of group/b in kas_git_poll_duration_seconds")
	}
	if !m.Has("kas_git_poll_errors_total") {
		t.Error("kas_git_poll_errors_total is not exposed")
	}
}

func webhookIDs(s *Set) []string {
	var ids []string
	for _, r := range s.WebhookRepositories() {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}
