package gitrepo

import "errors"

// Sentinel errors, wrapped with the repository id and what was looked up.
var (
	// ErrUnknownRepository: the id is not in the configured repositories.
	ErrUnknownRepository = errors.New("unknown repository")
	// ErrNotFound: the file (ReadFile) or ref (Resolve) does not exist in
	// the mirror.
	ErrNotFound = errors.New("not found")
	// ErrTooLarge: a file is larger than MaxFileSize.
	ErrTooLarge = errors.New("file too large")
)
