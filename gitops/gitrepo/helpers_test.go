package gitrepo

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// source is an upstream repository: a bare repository (dir) that a work
// repository pushes its commits to. Pushing runs git-receive-pack, which
// updates refs atomically as a git server does; go-git writing the served
// repository directly would let a concurrent fetch see half-written refs.
type source struct {
	t    *testing.T
	dir  string
	repo *git.Repository // the bare repository
	work *git.Repository
	wdir string
	when time.Time
}

func newSource(t *testing.T) *source {
	t.Helper()
	dir, wdir := t.TempDir(), t.TempDir()
	main := git.InitOptions{DefaultBranch: plumbing.Main}
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{Bare: true, InitOptions: main})
	if err != nil {
		t.Fatal(err)
	}
	work, err := git.PlainInitWithOptions(wdir, &git.PlainInitOptions{InitOptions: main})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := work.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{dir}}); err != nil {
		t.Fatal(err)
	}
	return &source{t: t, dir: dir, repo: repo, work: work, wdir: wdir, when: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// commit writes files (an empty content deletes the file), commits and
// pushes to main. It returns the new commit.
func (s *source) commit(files map[string]string) string {
	s.t.Helper()
	for name, content := range files {
		p := filepath.Join(s.wdir, filepath.FromSlash(name))
		if content == "" {
			if err := os.Remove(p); err != nil {
				s.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	return s.commitWorktree()
}

func (s *source) commitWorktree() string {
	s.t.Helper()
	w, err := s.work.Worktree()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := w.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		s.t.Fatal(err)
	}
	s.when = s.when.Add(time.Minute)
	sig := &object.Signature{Name: "test", Email: "test@example.com", When: s.when}
	h, err := w.Commit("change", &git.CommitOptions{Author: sig, All: true, AllowEmptyCommits: true})
	if err != nil {
		s.t.Fatal(err)
	}
	err = s.work.Push(&git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{"+refs/heads/main:refs/heads/main"}})
	if err != nil {
		s.t.Fatalf("push: %v", err)
	}
	return h.String()
}

func (s *source) setRef(ref *plumbing.Reference) {
	s.t.Helper()
	if err := s.repo.Storer.SetReference(ref); err != nil {
		s.t.Fatal(err)
	}
}

func (s *source) branch(name, commit string) {
	s.setRef(plumbing.NewHashReference(plumbing.NewBranchReferenceName(name), plumbing.NewHash(commit)))
}

func (s *source) deleteBranch(name string) {
	s.t.Helper()
	if err := s.repo.Storer.RemoveReference(plumbing.NewBranchReferenceName(name)); err != nil {
		s.t.Fatal(err)
	}
}

// setHead changes the default branch without touching the worktree.
func (s *source) setHead(branch string) {
	s.setRef(plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.NewBranchReferenceName(branch)))
}

func (s *source) lightweightTag(name, commit string) {
	s.setRef(plumbing.NewHashReference(plumbing.NewTagReferenceName(name), plumbing.NewHash(commit)))
}

func (s *source) annotatedTag(name, commit string) {
	s.t.Helper()
	sig := &object.Signature{Name: "test", Email: "test@example.com", When: s.when}
	if _, err := s.repo.CreateTag(name, plumbing.NewHash(commit), &git.CreateTagOptions{Tagger: sig, Message: "release " + name}); err != nil {
		s.t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// newCache makes a Cache over the given repositories in a fresh directory.
func newCache(t *testing.T, repos ...Repository) *Cache {
	t.Helper()
	c, err := New(t.TempDir(), repos, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func fetch(t *testing.T, c *Cache, id string) bool {
	t.Helper()
	changed, err := c.Fetch(context.Background(), id)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return changed
}

func resolve(t *testing.T, c *Cache, id string, ref Ref) string {
	t.Helper()
	commit, err := c.Resolve(id, ref)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	return commit
}

func readFile(t *testing.T, c *Cache, id, commit, path string) string {
	t.Helper()
	b, err := c.ReadFile(id, commit, path)
	if err != nil {
		t.Fatalf("ReadFile(%s): %v", path, err)
	}
	return string(b)
}
