package manifests

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// Matcher decides which paths of a commit a project's globs select.
type Matcher struct {
	// globs are validated and without their leading "/", matched against
	// paths without theirs.
	globs []string
}

// NewMatcher validates a project's globs: no globs means DefaultGlob, more
// than maxPaths (0: DefaultMaxPaths) is a *LimitError, and an invalid or
// overlong glob is ErrInvalidGlob naming it.
func NewMatcher(globs []string, maxPaths int) (*Matcher, error) {
	if maxPaths <= 0 {
		maxPaths = DefaultMaxPaths
	}
	if len(globs) > maxPaths {
		return nil, &LimitError{Limit: LimitPaths, Value: int64(len(globs)), Max: int64(maxPaths)}
	}
	if len(globs) == 0 {
		globs = []string{DefaultGlob}
	}
	m := &Matcher{globs: make([]string, 0, len(globs))}
	for _, g := range globs {
		switch {
		case len(g) > maxGlobLength:
			return nil, fmt.Errorf("glob %.40q…: %w: longer than %d bytes", g, ErrInvalidGlob, maxGlobLength)
		case strings.TrimPrefix(g, "/") == "":
			return nil, fmt.Errorf("glob %q: %w: empty, use e.g. %s", g, ErrInvalidGlob, DefaultGlob)
		case !doublestar.ValidatePattern(g):
			return nil, fmt.Errorf("glob %q: %w: check its brackets, braces and escapes", g, ErrInvalidGlob)
		case expansions(g) > maxExpansions:
			// doublestar matches each alternative of a brace by recursion:
			// "{a,b}{a,b}…" costs 2ⁿ matches per file.
			return nil, fmt.Errorf("glob %q: %w: its braces expand to more than %d patterns; use several globs", g, ErrInvalidGlob, maxExpansions)
		}
		m.globs = append(m.globs, strings.TrimPrefix(g, "/"))
	}
	return m, nil
}

// Match reports whether a file is selected. path is relative to the
// repository root, "/"-separated, with or without a leading "/". A path
// with a dot-directory or dot-file component is never selected.
func (m *Matcher) Match(path string) bool {
	path = strings.TrimPrefix(path, "/")
	if path == "" || hidden(path) {
		return false
	}
	for _, g := range m.globs {
		if doublestar.MatchUnvalidated(g, path) {
			return true
		}
	}
	return false
}

// hidden reports whether a component of path starts with a dot.
func hidden(path string) bool {
	for c := range strings.SplitSeq(path, "/") {
		if strings.HasPrefix(c, ".") {
			return true
		}
	}
	return false
}

// expansions returns how many patterns brace expansion turns p into (an
// upper bound: braces inside character classes count too), at most
// maxExpansions+1.
func expansions(p string) int {
	total := 1
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '{':
			end, alts := splitAlternatives(p[i+1:])
			if end < 0 {
				return total // unbalanced: ValidatePattern decides
			}
			n := 0
			for _, a := range alts {
				n = min(n+expansions(a), maxExpansions+1)
			}
			total = min(total*n, maxExpansions+1)
			i += end + 1
		}
	}
	return total
}

// splitAlternatives splits the inside of a brace group at its top-level
// commas. s starts after the "{"; end is the index of the matching "}" in
// s, or -1.
func splitAlternatives(s string) (end int, alts []string) {
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '{':
			depth++
		case '}':
			if depth == 0 {
				return i, append(alts, s[start:i])
			}
			depth--
		case ',':
			if depth == 0 {
				alts = append(alts, s[start:i])
				start = i + 1
			}
		}
	}
	return -1, nil
}

// Unmatched returns the globs (with a leading "/") that select none of
// paths:
// a glob with a typo selects nothing, and applying a commit without the
// files it was meant to select would prune their objects.
func (m *Matcher) Unmatched(paths []string) []string {
	var out []string
	for _, g := range m.globs {
		found := false
		for _, p := range paths {
			p = strings.TrimPrefix(p, "/")
			if p != "" && !hidden(p) && doublestar.MatchUnvalidated(g, p) {
				found = true
				break
			}
		}
		if !found {
			out = append(out, "/"+g)
		}
	}
	return out
}
