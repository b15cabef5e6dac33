package manifests

import (
	"cmp"
	"slices"

	"kubetunnel/gitops/gitrepo"
)

// Source is where files come from: *gitrepo.Cache.
type Source interface {
	Walk(id, commit string, fn gitrepo.WalkFunc) error
}

var _ Source = (*gitrepo.Cache)(nil)

// File is one selected manifest file.
type File struct {
	// Path is the file's path, "/"-rooted: "/manifests/app.yaml".
	Path string
	// Size is the size in bytes, from the git tree.
	Size int64
	open func() ([]byte, error)
}

// Read returns the file's content. It may be called after Select has
// returned, any number of times; each call reads the file anew.
func (f File) Read() ([]byte, error) { return f.open() }

// Select returns the files of a repository's commit that m selects, sorted
// by path, or a *LimitError when they are over lim (zero fields: defaults).
// It reads no content: sizes come from the git tree.
func Select(src Source, id, commit string, m *Matcher, lim Limits) ([]File, error) {
	lim = lim.WithDefaults()
	var files []File
	err := src.Walk(id, commit, func(path string, size int64, open func() ([]byte, error)) error {
		if m.Match(path) {
			files = append(files, File{Path: "/" + path, Size: size, open: open})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The order is part of the contract (the agent applies and reports in
	// it): sort explicitly rather than rely on the tree walker's order.
	slices.SortFunc(files, func(a, b File) int { return cmp.Compare(a.Path, b.Path) })
	if len(files) > lim.MaxFiles {
		return nil, &LimitError{Limit: LimitFiles, Path: files[lim.MaxFiles].Path, Value: int64(len(files)), Max: int64(lim.MaxFiles)}
	}
	var total int64
	var over *LimitError
	for _, f := range files {
		if f.Size > lim.MaxFileSize {
			return nil, &LimitError{Limit: LimitFileSize, Path: f.Path, Value: f.Size, Max: lim.MaxFileSize}
		}
		total += f.Size
		if total > lim.MaxTotalSize && over == nil {
			over = &LimitError{Limit: LimitTotalSize, Path: f.Path, Max: lim.MaxTotalSize}
		}
	}
	if over != nil {
		// Report the whole total, so the user knows how much to cut.
		over.Value = total
		return nil, over
	}
	return files, nil
}
