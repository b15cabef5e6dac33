package gitrepo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

const remoteName = "origin"

// mirrorRefSpecs copy the remote's branches and tags to the same names, as
// git clone --mirror does, so that refs/heads/main is the remote's main.
var mirrorRefSpecs = []config.RefSpec{
	"+refs/heads/*:refs/heads/*",
	"+refs/tags/*:refs/tags/*",
}

// mirror is the local bare copy of one repository.
type mirror struct {
	cfg    Repository
	dir    string
	logger *slog.Logger

	// mu guards the fields below. It also serialises every use of reader:
	// go-git's storage caches pack indexes in plain maps and is not safe for
	// concurrent use. mu is never held across network I/O or a callback.
	mu sync.Mutex
	// reader is the view that Resolve, ReadFile and Walk use. A fetch writes
	// through a repository value of its own and then replaces reader, whose
	// pack list would not include the new packs.
	reader *git.Repository
	refs   snapshot
	// flight is the fetch in progress, nil when none.
	flight *flight
	// waiting counts the callers waiting for flight (read by tests).
	waiting int
	// subs are notified when a fetch changed refs.
	subs map[*subscription]struct{}
}

// flight is one fetch, shared by the callers that arrive while it runs.
type flight struct {
	done    chan struct{}
	changed bool
	err     error
}

// openMirror opens the mirror in dir, or creates it. A directory that is
// not a usable repository (a crash during creation) is created anew: it is
// only a cache.
func openMirror(dir string, cfg Repository, logger *slog.Logger) (*mirror, error) {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		if !errors.Is(err, git.ErrRepositoryNotExists) {
			logger.Warn("Recreating unreadable mirror", "dir", dir, "err", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("remove %s: %w", dir, err)
		}
		if repo, err = git.PlainInit(dir, true); err != nil {
			return nil, fmt.Errorf("create mirror in %s: %w", dir, err)
		}
	}
	if err := setRemote(repo, cfg.URL); err != nil {
		return nil, fmt.Errorf("set remote in %s: %w", dir, err)
	}
	refs, err := storedSnapshot(repo.Storer)
	if err != nil {
		return nil, fmt.Errorf("read refs in %s: %w", dir, err)
	}
	return &mirror{
		cfg:    cfg,
		dir:    dir,
		logger: logger,
		reader: repo,
		refs:   refs,
		subs:   make(map[*subscription]struct{}),
	}, nil
}

// setRemote points the mirror at url; the configured URL may have changed
// since the mirror was made, and the next fetch then mirrors the new one.
func setRemote(repo *git.Repository, url string) error {
	cfg, err := repo.Config()
	if err != nil {
		return err
	}
	want := &config.RemoteConfig{Name: remoteName, URLs: []string{url}, Fetch: mirrorRefSpecs}
	if have, ok := cfg.Remotes[remoteName]; ok && len(have.URLs) == 1 && have.URLs[0] == url {
		return nil
	}
	cfg.Remotes[remoteName] = want
	return repo.SetConfig(cfg)
}

// fetch brings the mirror up to date, sharing a fetch already in progress.
// It reports whether the refs changed, and whether this call did the fetch
// (so only one caller notifies subscribers).
func (m *mirror) fetch(ctx context.Context) (changed, leader bool, err error) {
	for {
		m.mu.Lock()
		f := m.flight
		if f == nil {
			f = &flight{done: make(chan struct{})}
			m.flight = f
			m.mu.Unlock()
			func() {
				defer func() {
					m.mu.Lock()
					m.flight = nil
					m.mu.Unlock()
					close(f.done)
				}()
				f.changed, f.err = m.doFetch(ctx)
			}()
			return f.changed, true, f.err
		}
		m.waiting++
		m.mu.Unlock()
		var ctxErr error
		select {
		case <-f.done:
		case <-ctx.Done():
			ctxErr = ctx.Err()
		}
		m.mu.Lock()
		m.waiting--
		m.mu.Unlock()
		if ctxErr != nil {
			return false, false, ctxErr
		}
		if isContextError(f.err) && ctx.Err() == nil {
			// The other caller gave up, not this one: fetch again.
			continue
		}
		return f.changed, false, f.err
	}
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// doFetch asks the remote for its refs and fetches only when they differ
// from the mirror's, so an unchanged repository costs one round trip.
func (m *mirror) doFetch(ctx context.Context) (bool, error) {
	start := time.Now()
	creds, err := m.cfg.credentials()
	if err != nil {
		return false, err
	}
	// A repository value of our own: reader stays usable meanwhile.
	repo, err := git.PlainOpen(m.dir)
	if err != nil {
		return false, fmt.Errorf("open mirror %s: %w", m.dir, err)
	}
	swapped := false
	defer func() {
		if !swapped {
			closeRepo(repo)
		}
	}()
	remote, err := repo.Remote(remoteName)
	if err != nil {
		return false, fmt.Errorf("mirror %s: %w", m.dir, err)
	}
	advertised, err := remote.ListContext(ctx, &git.ListOptions{
		Auth:          creds.auth,
		CABundle:      creds.caBundle,
		PeelingOption: git.IgnorePeeled,
	})
	if err != nil && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return false, fmt.Errorf("list refs: %w", explain(err, m.cfg))
	}
	want := snapshotOf(advertised)

	m.mu.Lock()
	have := m.refs
	m.mu.Unlock()
	if want.equal(have) {
		m.logger.Debug("Repository unchanged", "repository", m.cfg.ID, "duration", time.Since(start))
		return false, nil
	}

	if len(want.refs) > 0 {
		err = repo.FetchContext(ctx, &git.FetchOptions{
			RemoteName: remoteName,
			RefSpecs:   mirrorRefSpecs,
			Auth:       creds.auth,
			CABundle:   creds.caBundle,
			Tags:       git.NoTags, // the refspecs fetch every tag already
			Force:      true,       // follow force pushes
			Prune:      true,       // drop deleted branches and tags
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return false, fmt.Errorf("fetch: %w", explain(err, m.cfg))
		}
	} else if err := removeMirroredRefs(repo); err != nil {
		// go-git refuses to fetch from an empty repository, so the refs of
		// a repository that became empty go by hand.
		return false, err
	}
	if want.head != "" {
		if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, want.head)); err != nil {
			return false, fmt.Errorf("set HEAD: %w", err)
		}
	}
	// The mirror's refs, not the listed ones, are the truth: a push between
	// list and fetch is in the mirror already.
	got, err := storedSnapshot(repo.Storer)
	if err != nil {
		return false, fmt.Errorf("read refs: %w", err)
	}

	m.mu.Lock()
	changed := !got.equal(m.refs)
	old := m.reader
	m.reader, m.refs = repo, got
	m.mu.Unlock()
	swapped = true
	// No one uses old any more: it was only used under mu.
	closeRepo(old)

	m.logger.Info("Repository fetched", "repository", m.cfg.ID, "changed", changed, "refs", len(got.refs), "duration", time.Since(start))
	return changed, nil
}

func removeMirroredRefs(repo *git.Repository) error {
	refs, err := storedSnapshot(repo.Storer)
	if err != nil {
		return fmt.Errorf("read refs: %w", err)
	}
	for name := range refs.refs {
		if err := repo.Storer.RemoveReference(name); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	return nil
}

// closeRepo closes the pack files a repository value holds open.
func closeRepo(repo *git.Repository) {
	if c, ok := repo.Storer.(io.Closer); ok {
		_ = c.Close() // read-only use: nothing to lose
	}
}

// unsafeDirChars are replaced in mirror directory names.
var unsafeDirChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// mirrorDir names the mirror of a repository: readable, and unique however
// the id is spelled (ids contain '/', and could contain "..").
func mirrorDir(root, id string) string {
	sum := sha256.Sum256([]byte(id))
	name := unsafeDirChars.ReplaceAllString(id, "_")
	if len(name) > 64 {
		name = name[:64]
	}
	return filepath.Join(root, name+"-"+hex.EncodeToString(sum[:6])+".git")
}
