package testutil

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

// A key given twice, by With and the call, in one call, or inside a
// group, is noted; the same key in different groups is not.
func TestDupKeys(t *testing.T) {
	var found dupFound
	l := slog.New(&dupKeys{Handler: slog.NewTextHandler(io.Discard, nil), found: &found})
	l.With("commit", "a").Info("synced", "commit", "a")
	l.Info("twice", "why", "x", "why", "y")
	l.WithGroup("g").With("k", 1).Info("grouped", "k", 2)
	l.With("k", 1).WithGroup("g").Info("fine", "k", 2)
	l.With("a", 1).Info("fine too", "b", 2)
	got := found.String()
	for _, want := range []string{`"synced" has key "commit" twice`, `"twice" has key "why" twice`, `"grouped" has key "g.k" twice`} {
		if !strings.Contains(got, want) {
			t.Errorf("found %q, want it to name %s", got, want)
		}
	}
	if strings.Contains(got, "fine") {
		t.Errorf("found %q: distinct keys reported", got)
	}
}
