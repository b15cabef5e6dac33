package manifests

import (
	"slices"
	"strings"
	"testing"

	"github.com/bmatcuk/doublestar/v4"
)

// Globs come from agents' config.yaml: matching must never panic, never
// select a hidden path, and agree with doublestar for the rest.
func FuzzMatch(f *testing.F) {
	for _, seed := range []struct{ glob, path string }{
		{DefaultGlob, "manifests/a.yaml"},
		{DefaultGlob, ".gitlab/agents/a/config.yaml"},
		{"/manifests/**/*.yaml", "/manifests/x/y.yaml"},
		{"manifests/*.{yaml,yml}", "manifests/.a.yml"},
		{"/[a-z]*/{a,b{c,d}}/**", "x/bd/e"},
		{`/a\*b`, "a*b"},
		{"/**/", "a/"},
		{"/{a,", "a"},
	} {
		f.Add(seed.glob, seed.path)
	}
	f.Fuzz(func(t *testing.T, glob, path string) {
		m, err := NewMatcher([]string{glob}, 0)
		if err != nil {
			return
		}
		got := m.Match(path)
		rel := strings.TrimPrefix(path, "/")
		if got && hidden(rel) {
			t.Fatalf("glob %q selected hidden path %q", glob, path)
		}
		if !hidden(rel) && rel != "" {
			want, _ := doublestar.Match(strings.TrimPrefix(glob, "/"), rel)
			if got != want {
				t.Fatalf("glob %q, path %q: Match %v, doublestar %v", glob, path, got, want)
			}
		}
		// A leading slash on either side changes nothing.
		m2, err := NewMatcher([]string{"/" + strings.TrimPrefix(glob, "/")}, 0)
		if err != nil {
			t.Fatalf("glob %q valid without its slash but not with: %v", glob, err)
		}
		if m2.Match("/"+rel) != got {
			t.Fatalf("glob %q, path %q: leading slashes change the answer", glob, path)
		}
	})
}

// Unmatched, which decides whether a commit may prune, agrees with Match:
// a glob is reported unmatched exactly when it selects none of the paths.
func FuzzUnmatched(f *testing.F) {
	f.Add("/manifests/**/*.yaml", "/manifest/crds/*.yaml", "manifests/a/b.yaml", ".hidden/x.yaml")
	f.Add(DefaultGlob, "/{a,b}/*", "a/x.json", "b/.y")
	f.Add("/[", "/**", "", "/")
	f.Fuzz(func(t *testing.T, g1, g2, p1, p2 string) {
		m, err := NewMatcher([]string{g1, g2}, 0)
		if err != nil {
			return
		}
		paths := []string{p1, p2}
		unmatched := m.Unmatched(paths)
		for _, g := range []string{g1, g2} {
			single, err := NewMatcher([]string{g}, 0)
			if err != nil {
				t.Fatalf("glob %q valid in a pair but not alone: %v", g, err)
			}
			selects := single.Match(p1) || single.Match(p2)
			reported := slices.Contains(unmatched, "/"+strings.TrimPrefix(g, "/"))
			if selects == reported {
				t.Fatalf("glob %q, paths %q: selects a file %v, reported unmatched %v (%q)", g, paths, selects, reported, unmatched)
			}
		}
	})
}
