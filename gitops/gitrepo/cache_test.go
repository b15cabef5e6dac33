package gitrepo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestFetchAndRead(t *testing.T) {
	src := newSource(t)
	first := src.commit(map[string]string{
		".gitlab/agents/prod/config.yaml": "gitops: {}\n",
		"manifests/cm.yaml":               "kind: ConfigMap\n",
	})
	c := newCache(t, Repository{ID: "group/a", URL: "file://" + src.dir})

	if _, err := c.Resolve("group/a", Ref{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve before the first fetch: %v, want ErrNotFound", err)
	}
	if !fetch(t, c, "group/a") {
		t.Error("first fetch: changed = false")
	}
	if got := resolve(t, c, "group/a", Ref{}); got != first {
		t.Errorf("default branch = %s, want %s", got, first)
	}
	if got := resolve(t, c, "group/a", Ref{Branch: "main"}); got != first {
		t.Errorf("branch main = %s, want %s", got, first)
	}
	if got := readFile(t, c, "group/a", first, ".gitlab/agents/prod/config.yaml"); got != "gitops: {}\n" {
		t.Errorf("config.yaml = %q", got)
	}
	// A leading slash, as in agent config globs, is fine.
	if got := readFile(t, c, "group/a", first, "/manifests/cm.yaml"); got != "kind: ConfigMap\n" {
		t.Errorf("cm.yaml = %q", got)
	}
	for _, path := range []string{"missing.yaml", "manifests/missing.yaml", "nodir/x.yaml", "manifests"} {
		if _, err := c.ReadFile("group/a", first, path); !errors.Is(err, ErrNotFound) {
			t.Errorf("ReadFile(%s): %v, want ErrNotFound", path, err)
		}
	}
	if fetch(t, c, "group/a") {
		t.Error("second fetch without a change: changed = true")
	}
}

func TestDetectChange(t *testing.T) {
	src := newSource(t)
	first := src.commit(map[string]string{"a.yaml": "v1"})
	c := newCache(t, Repository{ID: "r", URL: src.dir}) // a plain path
	fetch(t, c, "r")

	second := src.commit(map[string]string{"a.yaml": "v2", "b.yaml": "new"})
	if !fetch(t, c, "r") {
		t.Fatal("fetch after a commit: changed = false")
	}
	if got := resolve(t, c, "r", Ref{}); got != second {
		t.Errorf("default branch = %s, want %s", got, second)
	}
	if got := readFile(t, c, "r", second, "a.yaml"); got != "v2" {
		t.Errorf("a.yaml at the new commit = %q", got)
	}
	// Old commits stay readable: agents may still be on them.
	if got := readFile(t, c, "r", first, "a.yaml"); got != "v1" {
		t.Errorf("a.yaml at the old commit = %q", got)
	}
	if _, err := c.ReadFile("r", first, "b.yaml"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b.yaml at the old commit: %v, want ErrNotFound", err)
	}

	// A force push back to the first commit is a change too.
	src.branch("main", first)
	if !fetch(t, c, "r") {
		t.Fatal("fetch after a force push: changed = false")
	}
	if got := resolve(t, c, "r", Ref{}); got != first {
		t.Errorf("after force push: %s, want %s", got, first)
	}
}

func TestDefaultBranch(t *testing.T) {
	src := newSource(t)
	old := src.commit(map[string]string{"a": "1"})
	src.branch("stable", old)
	latest := src.commit(map[string]string{"a": "2"})
	c := newCache(t, Repository{ID: "r", URL: "file://" + src.dir})
	fetch(t, c, "r")
	if got := resolve(t, c, "r", Ref{}); got != latest {
		t.Errorf("default branch = %s, want main's %s", got, latest)
	}
	if got := resolve(t, c, "r", Ref{Branch: "stable"}); got != old {
		t.Errorf("branch stable = %s, want %s", got, old)
	}

	src.setHead("stable")
	if !fetch(t, c, "r") {
		t.Fatal("fetch after a default branch change: changed = false")
	}
	if got := resolve(t, c, "r", Ref{}); got != old {
		t.Errorf("default branch after the change = %s, want stable's %s", got, old)
	}

	src.setHead("main")
	src.deleteBranch("stable")
	if !fetch(t, c, "r") {
		t.Fatal("fetch after deleting a branch: changed = false")
	}
	if _, err := c.Resolve("r", Ref{Branch: "stable"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted branch: %v, want ErrNotFound", err)
	}
	if _, err := c.Resolve("r", Ref{Branch: "nope"}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `repository "r": branch "nope": not found`) {
		t.Errorf("missing branch: %v", err)
	}
}

func TestTags(t *testing.T) {
	src := newSource(t)
	v1 := src.commit(map[string]string{"a": "1"})
	src.lightweightTag("v1", v1)
	v2 := src.commit(map[string]string{"a": "2"})
	src.annotatedTag("v2", v2)
	src.commit(map[string]string{"a": "3"})
	c := newCache(t, Repository{ID: "r", URL: "file://" + src.dir})
	fetch(t, c, "r")

	if got := resolve(t, c, "r", Ref{Tag: "v1"}); got != v1 {
		t.Errorf("lightweight tag = %s, want %s", got, v1)
	}
	if got := resolve(t, c, "r", Ref{Tag: "v2"}); got != v2 {
		t.Errorf("annotated tag = %s, want the commit %s", got, v2)
	}
	if _, err := c.Resolve("r", Ref{Tag: "v3"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tag: %v, want ErrNotFound", err)
	}

	src.lightweightTag("v3", v1)
	if !fetch(t, c, "r") {
		t.Fatal("fetch after a new tag: changed = false")
	}
	if got := resolve(t, c, "r", Ref{Tag: "v3"}); got != v1 {
		t.Errorf("new tag = %s, want %s", got, v1)
	}
}

func TestCommitRef(t *testing.T) {
	src := newSource(t)
	first := src.commit(map[string]string{"a": "1"})
	src.commit(map[string]string{"a": "2"})
	c := newCache(t, Repository{ID: "r", URL: "file://" + src.dir})
	fetch(t, c, "r")

	if got := resolve(t, c, "r", Ref{Commit: first}); got != first {
		t.Errorf("commit ref = %s, want %s", got, first)
	}
	unknown := strings.Repeat("ab", 20)
	if _, err := c.Resolve("r", Ref{Commit: unknown}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown commit: %v, want ErrNotFound", err)
	}
	if _, err := c.Resolve("r", Ref{Commit: "abc"}); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("short commit: %v, want a syntax error", err)
	}
	if _, err := c.ReadFile("r", unknown, "a"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("ReadFile at an unknown commit: %v, want an error that is not ErrNotFound", err)
	}
}

func TestEmptyRepository(t *testing.T) {
	src := newSource(t)
	c := newCache(t, Repository{ID: "r", URL: "file://" + src.dir})
	if fetch(t, c, "r") {
		t.Error("fetch of an empty repository: changed = true")
	}
	if _, err := c.Resolve("r", Ref{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve in an empty repository: %v, want ErrNotFound", err)
	}
	commit := src.commit(map[string]string{"a": "1"})
	if !fetch(t, c, "r") {
		t.Error("fetch after the first commit: changed = false")
	}
	if got := resolve(t, c, "r", Ref{}); got != commit {
		t.Errorf("default branch = %s, want %s", got, commit)
	}
}

func TestUnknownRepository(t *testing.T) {
	c := newCache(t)
	if _, err := c.Fetch(context.Background(), "nope"); !errors.Is(err, ErrUnknownRepository) {
		t.Errorf("Fetch: %v", err)
	}
	if _, err := c.Resolve("nope", Ref{}); !errors.Is(err, ErrUnknownRepository) {
		t.Errorf("Resolve: %v", err)
	}
	if _, err := c.ReadFile("nope", strings.Repeat("a", 40), "x"); !errors.Is(err, ErrUnknownRepository) {
		t.Errorf("ReadFile: %v", err)
	}
	if err := c.Walk("nope", strings.Repeat("a", 40), nil); !errors.Is(err, ErrUnknownRepository) {
		t.Errorf("Walk: %v", err)
	}
}

func TestFetchError(t *testing.T) {
	c := newCache(t, Repository{ID: "gone", URL: "file://" + filepath.Join(t.TempDir(), "missing")})
	_, err := c.Fetch(context.Background(), "gone")
	if err == nil || !strings.HasPrefix(err.Error(), `repository "gone": `) {
		t.Fatalf("Fetch of a missing repository: %v", err)
	}
}

// A restarted kas reads its mirrors at once and fetches only what changed.
func TestRestart(t *testing.T) {
	src := newSource(t)
	commit := src.commit(map[string]string{"a": "1"})
	dir := t.TempDir()
	repos := []Repository{{ID: "r", URL: "file://" + src.dir}}
	c, err := New(dir, repos, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	fetch(t, c, "r")
	c.Close()

	c, err = New(dir, repos, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := resolve(t, c, "r", Ref{}); got != commit {
		t.Errorf("after restart, before fetch: %s, want %s", got, commit)
	}
	if got := readFile(t, c, "r", commit, "a"); got != "1" {
		t.Errorf("after restart: a = %q", got)
	}
	if fetch(t, c, "r") {
		t.Error("fetch after restart without a change: changed = true")
	}
}

// The URL of a repository may change between runs: the mirror follows.
func TestURLChange(t *testing.T) {
	a, b := newSource(t), newSource(t)
	a.commit(map[string]string{"a": "1"})
	commitB := b.commit(map[string]string{"b": "1"})
	dir := t.TempDir()
	c, err := New(dir, []Repository{{ID: "r", URL: "file://" + a.dir}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	fetch(t, c, "r")
	c.Close()

	c, err = New(dir, []Repository{{ID: "r", URL: "file://" + b.dir}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !fetch(t, c, "r") {
		t.Error("fetch from the new URL: changed = false")
	}
	if got := resolve(t, c, "r", Ref{}); got != commitB {
		t.Errorf("after URL change: %s, want %s", got, commitB)
	}
}

func TestMirrorDir(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"group/a", "group_a", "..", "../../etc", "a b", strings.Repeat("x", 300)} {
		d := mirrorDir("/cache", id)
		if filepath.Dir(d) != "/cache" || filepath.Base(d) == ".." {
			t.Errorf("mirrorDir(%q) = %q escapes the cache", id, d)
		}
		if other, dup := seen[d]; dup {
			t.Errorf("mirrorDir(%q) = mirrorDir(%q) = %q", id, other, d)
		}
		seen[d] = id
	}
}

// Many callers fetch and read at once while the source changes; run with
// -race.
func TestConcurrentUse(t *testing.T) {
	if testing.Short() {
		t.Skip("runs many git fetches at once: not in -short")
	}
	src := newSource(t)
	first := src.commit(map[string]string{"a": "0"})
	c := newCache(t, Repository{ID: "r", URL: "file://" + src.dir})
	fetch(t, c, "r")

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				if _, err := c.Fetch(context.Background(), "r"); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for range 50 {
				commit, err := c.Resolve("r", Ref{})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := c.ReadFile("r", commit, "a"); err != nil {
					t.Error(err)
					return
				}
				if err := c.Walk("r", first, func(string, int64, func() ([]byte, error)) error { return nil }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 5 {
		src.commit(map[string]string{"a": string(rune('1' + i))})
	}
	wg.Wait()

	last := src.commit(map[string]string{"a": "last"})
	fetch(t, c, "r")
	if got := resolve(t, c, "r", Ref{}); got != last {
		t.Errorf("after concurrent use: %s, want %s", got, last)
	}
	if err := os.RemoveAll(src.dir); err != nil {
		t.Fatal(err)
	}
}
