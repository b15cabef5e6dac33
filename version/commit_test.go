package version

import "testing"

// The commit set at link time wins over the go command's VCS stamp.
func TestBuildCommitFromLinker(t *testing.T) {
	defer func(c string) { Commit = c }(Commit)
	Commit = "0123456789abcdef0123456789abcdef01234567"
	if got := BuildCommit(); got != Commit {
		t.Errorf("BuildCommit() = %q, want the -X value", got)
	}
}
