package gitrepo

import "fmt"

// Ref names what to resolve: at most one field is set; none means the
// remote's default branch (its HEAD).
type Ref struct {
	Branch string
	Tag    string
	// Commit is a full commit SHA.
	Commit string
}

// String describes the ref for messages: "branch main", "tag v1",
// "commit 0123…", "the default branch".
func (r Ref) String() string {
	switch {
	case r.Branch != "":
		return fmt.Sprintf("branch %q", r.Branch)
	case r.Tag != "":
		return fmt.Sprintf("tag %q", r.Tag)
	case r.Commit != "":
		return "commit " + r.Commit
	default:
		return "the default branch"
	}
}
