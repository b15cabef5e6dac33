package rpc

import (
	"errors"
	"fmt"
	"strings"
)

// Prefixes of ObjectsToSynchronizeRequest.ref. The encoding is part of the
// wire contract: agentk encodes the manifest project's ref, kas decodes it.
const (
	RefBranchPrefix = "branch:"
	RefTagPrefix    = "tag:"
	RefCommitPrefix = "commit:"
)

// EncodeRef encodes a ref with at most one of branch, tag and commit set
// (checked by agentcfg's validation); all empty means the default branch
// and encodes as "".
func EncodeRef(branch, tag, commit string) string {
	switch {
	case branch != "":
		return RefBranchPrefix + branch
	case tag != "":
		return RefTagPrefix + tag
	case commit != "":
		return RefCommitPrefix + commit
	default:
		return ""
	}
}

// DecodeRef is the inverse of EncodeRef.
func DecodeRef(s string) (branch, tag, commit string, err error) {
	if s == "" {
		return "", "", "", nil
	}
	kind, value, ok := strings.Cut(s, ":")
	if !ok || value == "" {
		return "", "", "", fmt.Errorf("ref %q: %w", s, errBadRef)
	}
	switch kind + ":" {
	case RefBranchPrefix:
		return value, "", "", nil
	case RefTagPrefix:
		return "", value, "", nil
	case RefCommitPrefix:
		return "", "", value, nil
	default:
		return "", "", "", fmt.Errorf("ref %q: %w", s, errBadRef)
	}
}

var errBadRef = errors.New(`want "branch:<name>", "tag:<name>", "commit:<sha>" or empty for the default branch`)
