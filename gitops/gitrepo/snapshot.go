package gitrepo

import (
	"maps"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// snapshot is what a mirror knows of its remote's refs. Resolve reads it
// instead of the ref files, which a fetch may be rewriting.
type snapshot struct {
	// head is the branch the remote's HEAD points to ("refs/heads/main"),
	// empty when unknown.
	head plumbing.ReferenceName
	// refs holds the branches and tags (refs/heads/*, refs/tags/*).
	refs map[plumbing.ReferenceName]plumbing.Hash
}

func (s snapshot) equal(o snapshot) bool {
	return s.head == o.head && maps.Equal(s.refs, o.refs)
}

// mirrored reports whether a ref is one a mirror keeps. Others (merge
// request refs, notes) are not needed to resolve a branch, tag or commit.
func mirrored(name plumbing.ReferenceName) bool {
	return name.IsBranch() || name.IsTag()
}

// snapshotOf reads a snapshot from a list of references: the remote's
// advertised ones or the mirror's own.
func snapshotOf(refs []*plumbing.Reference) snapshot {
	s := snapshot{refs: make(map[plumbing.ReferenceName]plumbing.Hash)}
	for _, r := range refs {
		switch {
		case r.Name() == plumbing.HEAD && r.Type() == plumbing.SymbolicReference:
			s.head = r.Target()
		case r.Type() == plumbing.HashReference && mirrored(r.Name()) && !strings.HasSuffix(r.Name().String(), "^{}"):
			s.refs[r.Name()] = r.Hash()
		}
	}
	// A HEAD that names a missing branch (an empty repository's "master")
	// is no default branch.
	if _, ok := s.refs[s.head]; !ok {
		s.head = ""
	}
	return s
}

// storedSnapshot reads the snapshot of a mirror from its storage.
func storedSnapshot(st storer.ReferenceStorer) (snapshot, error) {
	iter, err := st.IterReferences()
	if err != nil {
		return snapshot{}, err
	}
	var refs []*plumbing.Reference
	err = iter.ForEach(func(r *plumbing.Reference) error {
		refs = append(refs, r)
		return nil
	})
	if err != nil {
		return snapshot{}, err
	}
	// IterReferences does not return HEAD.
	if head, err := st.Reference(plumbing.HEAD); err == nil {
		refs = append(refs, head)
	}
	return snapshotOf(refs), nil
}
