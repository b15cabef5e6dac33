package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
)

// Cache keeps a bare mirror of each configured repository under one
// directory, which belongs to this Cache alone. Its methods are safe for
// concurrent use.
type Cache struct {
	logger  *slog.Logger
	mirrors map[string]*mirror // by repository id; fixed after New
}

// New validates repos and opens (or creates) their mirrors under dir. It
// does not fetch: mirrors from a previous run can be read at once, new
// ones are empty until their first Fetch.
func New(dir string, repos []Repository, logger *slog.Logger) (*Cache, error) {
	if err := ValidateRepositories(repos); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("git cache directory: %w", err)
	}
	c := &Cache{logger: logger, mirrors: make(map[string]*mirror, len(repos))}
	for _, r := range repos {
		m, err := openMirror(mirrorDir(dir, r.ID), r, logger)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("repository %q: %w", r.ID, err)
		}
		c.mirrors[r.ID] = m
	}
	return c, nil
}

// IDs returns the ids of the repositories, sorted.
func (c *Cache) IDs() []string {
	ids := make([]string, 0, len(c.mirrors))
	for id := range c.mirrors {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Has reports whether id is a configured repository.
func (c *Cache) Has(id string) bool {
	_, ok := c.mirrors[id]
	return ok
}

// Fetch brings the mirror of a repository up to date and reports whether
// its branches, tags or default branch changed. Callers that arrive while a
// fetch of the same repository runs wait for it and share its result.
func (c *Cache) Fetch(ctx context.Context, id string) (changed bool, err error) {
	m, err := c.mirror(id)
	if err != nil {
		return false, err
	}
	changed, leader, err := m.fetch(ctx)
	if err != nil {
		return false, fmt.Errorf("repository %q: %w", id, err)
	}
	if changed && leader {
		m.notify()
	}
	return changed, nil
}

// Resolve returns the commit a ref points to in the mirror. A tag is peeled
// to its commit; a commit ref is checked to exist. A ref that does not exist
// (or was not fetched yet) is ErrNotFound.
func (c *Cache) Resolve(id string, ref Ref) (commit string, err error) {
	m, err := c.mirror(id)
	if err != nil {
		return "", err
	}
	h, err := m.resolve(ref)
	if err != nil {
		return "", fmt.Errorf("repository %q: %s: %w", id, ref, err)
	}
	return h.String(), nil
}

// ReadFile returns the content of a file at a commit. path is relative to
// the repository root; a leading "/" is allowed. A missing path, or one
// that is a directory, is ErrNotFound.
func (c *Cache) ReadFile(id, commit, path string) ([]byte, error) {
	m, err := c.mirror(id)
	if err != nil {
		return nil, err
	}
	h, err := parseCommit(commit)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", id, err)
	}
	b, err := m.readFile(h, path)
	if err != nil {
		return nil, fmt.Errorf("repository %q: commit %s: %s: %w", id, commit, path, err)
	}
	return b, nil
}

// WalkFunc is called for each file of a commit with its path (relative to
// the repository root, "/"-separated, no leading "/") and size. open reads
// the content; call it only for the files you need. A non-nil error stops
// the walk and is returned by Walk as it is.
type WalkFunc func(path string, size int64, open func() ([]byte, error)) error

// Walk calls fn for each regular file of a commit in path order. Symbolic
// links and submodules are skipped: their content is not a file's. fn runs
// without any lock held, so it may call other Cache methods.
func (c *Cache) Walk(id, commit string, fn WalkFunc) error {
	m, err := c.mirror(id)
	if err != nil {
		return err
	}
	h, err := parseCommit(commit)
	if err != nil {
		return fmt.Errorf("repository %q: %w", id, err)
	}
	files, err := m.list(h)
	if err != nil {
		return fmt.Errorf("repository %q: commit %s: %w", id, commit, err)
	}
	for _, f := range files {
		open := func() ([]byte, error) {
			b, err := m.readBlob(f.hash, f.size)
			if err != nil {
				return nil, fmt.Errorf("repository %q: commit %s: %s: %w", id, commit, f.path, err)
			}
			return b, nil
		}
		if err := fn(f.path, f.size, open); err != nil {
			return err
		}
	}
	return nil
}

// Subscribe returns a channel that receives a value after each fetch that
// changed the repository. Notifications coalesce: a slow reader gets one
// value for several changes. To miss nothing, subscribe first, then Resolve.
// cancel stops the notifications; the channel is never closed. An unknown
// id is never notified.
func (c *Cache) Subscribe(id string) (ch <-chan struct{}, cancel func()) {
	m, ok := c.mirrors[id]
	if !ok {
		return make(chan struct{}), func() {}
	}
	return m.subscribe()
}

// Close releases the files the mirrors hold open. The Cache must not be
// used afterwards.
func (c *Cache) Close() {
	for _, m := range c.mirrors {
		m.close()
	}
}

func (c *Cache) mirror(id string) (*mirror, error) {
	m, ok := c.mirrors[id]
	if !ok {
		return nil, fmt.Errorf("repository %q: %w", id, ErrUnknownRepository)
	}
	return m, nil
}

var errBadCommit = errors.New("not a full commit SHA (40 hex digits)")

func parseCommit(s string) (plumbing.Hash, error) {
	if !plumbing.IsHash(s) {
		return plumbing.ZeroHash, fmt.Errorf("commit %q: %w", s, errBadCommit)
	}
	return plumbing.NewHash(s), nil
}
