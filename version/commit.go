package version

import "runtime/debug"

// Commit is the commit kas and agentk are built from, set at build time:
//
//	go build -ldflags "-X kubetunnel/version.Commit=$(git rev-parse HEAD)" ./cmd/...
//
// When empty, BuildCommit falls back to the go command's VCS stamp.
var Commit string

// BuildCommit is the commit this binary was built from: Commit if the
// linker set it, else the go command's vcs.revision (with "-dirty" for a
// modified tree), else "".
func BuildCommit() string {
	if Commit != "" {
		return Commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}
