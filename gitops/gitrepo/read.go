package gitrepo

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// MaxFileSize is the largest file ReadFile and Walk's open return: a
// Kubernetes object cannot be much over 1 MiB, so a file this large is a
// mistake (or an attack), not a manifest.
const MaxFileSize = 32 << 20

// maxTagDepth bounds peeling tags of tags.
const maxTagDepth = 10

// resolve finds the commit of ref in the snapshot.
func (m *mirror) resolve(ref Ref) (plumbing.Hash, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case ref.Commit != "":
		h, err := parseCommit(ref.Commit)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if _, err := m.reader.CommitObject(h); err != nil {
			if errors.Is(err, plumbing.ErrObjectNotFound) {
				return plumbing.ZeroHash, fmt.Errorf("%w (not pushed, or not fetched yet)", ErrNotFound)
			}
			return plumbing.ZeroHash, err
		}
		return h, nil
	case ref.Branch != "":
		return m.peelLocked(plumbing.NewBranchReferenceName(ref.Branch))
	case ref.Tag != "":
		return m.peelLocked(plumbing.NewTagReferenceName(ref.Tag))
	default:
		if m.refs.head == "" {
			return plumbing.ZeroHash, fmt.Errorf("%w (the repository is empty, or not fetched yet)", ErrNotFound)
		}
		return m.peelLocked(m.refs.head)
	}
}

// peelLocked returns the commit a branch or tag points to, through any
// annotated tags.
func (m *mirror) peelLocked(name plumbing.ReferenceName) (plumbing.Hash, error) {
	h, ok := m.refs.refs[name]
	if !ok {
		return plumbing.ZeroHash, ErrNotFound
	}
	for range maxTagDepth {
		obj, err := m.reader.Object(plumbing.AnyObject, h)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("%s: %w", h, err)
		}
		switch o := obj.(type) {
		case *object.Commit:
			return h, nil
		case *object.Tag:
			h = o.Target
		default:
			return plumbing.ZeroHash, fmt.Errorf("points to a %s, not a commit", obj.Type())
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("more than %d tags in a chain", maxTagDepth)
}

// readFile reads a file of a commit.
func (m *mirror) readFile(commit plumbing.Hash, path string) ([]byte, error) {
	path = strings.TrimPrefix(path, "/")
	m.mu.Lock()
	defer m.mu.Unlock()
	tree, err := m.treeLocked(commit)
	if err != nil {
		return nil, err
	}
	e, err := tree.FindEntry(path)
	if err != nil {
		if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	switch e.Mode {
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
	case filemode.Dir:
		return nil, fmt.Errorf("%w: it is a directory", ErrNotFound)
	default:
		return nil, fmt.Errorf("is a %s, not a regular file", describeMode(e.Mode))
	}
	return m.readBlobLocked(e.Hash)
}

// file is one entry of a listing.
type file struct {
	path string
	size int64
	hash plumbing.Hash
}

// list returns the regular files of a commit. It reads everything it needs
// under mu so that the caller's callback runs without it.
func (m *mirror) list(commit plumbing.Hash) ([]file, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tree, err := m.treeLocked(commit)
	if err != nil {
		return nil, err
	}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	var files []file
	for {
		name, e, err := w.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("walk tree: %w", err)
		}
		switch e.Mode {
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
		default:
			continue // directories (walked into), symbolic links, submodules
		}
		size, err := m.reader.Storer.EncodedObjectSize(e.Hash)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		files = append(files, file{path: name, size: size, hash: e.Hash})
	}
}

func (m *mirror) readBlob(h plumbing.Hash, size int64) ([]byte, error) {
	if size > MaxFileSize {
		return nil, fmt.Errorf("%d bytes: %w (the limit is %d)", size, ErrTooLarge, MaxFileSize)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.readBlobLocked(h)
}

func (m *mirror) readBlobLocked(h plumbing.Hash) ([]byte, error) {
	blob, err := m.reader.BlobObject(h)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	if blob.Size > MaxFileSize {
		return nil, fmt.Errorf("%d bytes: %w (the limit is %d)", blob.Size, ErrTooLarge, MaxFileSize)
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	return b, nil
}

func (m *mirror) treeLocked(commit plumbing.Hash) (*object.Tree, error) {
	c, err := m.reader.CommitObject(commit)
	if err != nil {
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, errors.New("no such commit in the mirror (not pushed, or not fetched yet)")
		}
		return nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree: %w", err)
	}
	return tree, nil
}

func describeMode(mode filemode.FileMode) string {
	switch mode {
	case filemode.Symlink:
		return "symbolic link"
	case filemode.Submodule:
		return "submodule"
	default:
		return "mode " + mode.String()
	}
}

// close releases the reader's open files.
func (m *mirror) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	closeRepo(m.reader)
}
