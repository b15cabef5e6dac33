// Package testutil holds small helpers shared by tests: a git repository
// driven by the real git command, a log sink that tests can search (and
// that fails a test whose records carry a key twice, dupkeys.go),
// polling for a condition (Eventually, Poll), waiting until a goroutine
// is parked (WaitBlocked, blocked.go), free loopback ports
// (ports.go), connections from a chosen loopback address and whether the
// far end closed them (conns.go), an HTTP request in one call (http.go),
// a labelled series of a registry (metrics.go; testutil/metrics reads
// whole scrapes), a fake Kubernetes watch stream (watch.go) and YAML
// that ends the test on an error (yaml.go). Shared test environments live in
// the subpackages: childproc (a logged daemon), stack (kas and agentk as
// a user runs them), controlplane (kube-apiserver and etcd from bin/),
// metrics (expfmt scrapes), fakegitlab, redisserver, tcplb, kascluster.
package testutil

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// GitRepo is a real git repository in a temp dir, on branch main.
type GitRepo struct {
	t   testing.TB
	Dir string
}

// NewGitRepo makes an empty repository.
func NewGitRepo(t testing.TB) *GitRepo {
	t.Helper()
	r := &GitRepo{t: t, Dir: t.TempDir()}
	r.Git("init", "-q", "-b", "main")
	r.Git("config", "user.email", "test@example.com")
	r.Git("config", "user.name", "test")
	r.Git("config", "commit.gpgsign", "false")
	return r
}

// Git runs git in the repository and returns its trimmed output.
func (r *GitRepo) Git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Commit writes files (path → content; empty content deletes the file),
// commits them and returns the commit id.
func (r *GitRepo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	for path, content := range files {
		full := filepath.Join(r.Dir, path)
		if content == "" {
			r.Git("rm", "-q", "--ignore-unmatch", path)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.Git("add", path)
	}
	r.Git("commit", "-q", "--allow-empty", "-m", msg)
	return r.Git("rev-parse", "HEAD")
}

// CommitOnBranch commits files on branch (created from HEAD if missing)
// in a linked worktree, so the repository's HEAD never moves: kas follows
// a remote's HEAD, and checking out another branch here would be seen as
// the default branch moving.
func (r *GitRepo) CommitOnBranch(branch, msg string, files map[string]string) string {
	r.t.Helper()
	if exec.Command("git", "-C", r.Dir, "rev-parse", "-q", "--verify", "refs/heads/"+branch).Run() != nil {
		r.Git("branch", branch)
	}
	wt := &GitRepo{t: r.t, Dir: filepath.Join(r.t.TempDir(), "wt")}
	r.Git("worktree", "add", "-q", wt.Dir, branch)
	defer r.Git("worktree", "remove", "--force", wt.Dir)
	return wt.Commit(msg, files)
}

// URL is the repository as a file:// URL.
func (r *GitRepo) URL() string { return "file://" + r.Dir }

// LogSink collects log output so a test can assert what a user would read.
type LogSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tb  testing.TB
	// dups are the records that carried a key twice.
	dups dupFound
}

// NewLogger returns a debug-level logger writing to a sink (and to t.Log
// when verbose). The test fails at its end if a record carried a key
// twice (see dupKeys).
func NewLogger(t testing.TB) (*slog.Logger, *LogSink) {
	s := &LogSink{tb: t}
	t.Cleanup(func() {
		if d := s.dups.String(); d != "" {
			t.Errorf("log records with a key twice (a JSON reader keeps one value): %s", d)
		}
	})
	return LoggerTo(s), s
}

// LoggerTo is a debug-level logger writing to an existing sink (a kas
// replica keeps its sink across restarts).
func LoggerTo(s *LogSink) *slog.Logger {
	h := slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(&dupKeys{Handler: h, found: &s.dups})
}

func (s *LogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return s.buf.Write(p)
}

// String is everything logged so far.
func (s *LogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Contains reports whether any log line contains sub.
func (s *LogSink) Contains(sub string) bool { return strings.Contains(s.String(), sub) }

// Eventually polls cond every 20ms until it is true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Poll(t, pollEvery, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// EventuallyNoError polls cond every 20ms until it returns nil or timeout
// passes; the failure names the last error, so a test can say what was
// still missing.
func EventuallyNoError(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	Poll(t, pollEvery, timeout, what, cond)
}

const pollEvery = 20 * time.Millisecond

var errNotYet = errors.New("condition not met")

// Poll is EventuallyNoError polling every interval: for conditions that
// are costly to check (a kubectl run, a scrape of many agents).
func Poll(t testing.TB, interval, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if err == errNotYet {
				t.Fatalf("timed out after %v waiting for %s", timeout, what)
			}
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(interval)
	}
}
