package apply

import (
	"errors"
	"fmt"
)

// Sentinel errors, wrapped with what they are about; match with errors.Is.
var (
	// ErrInvalidProject: a Project key has a value Sync does not know.
	ErrInvalidProject = errors.New("invalid manifest project")
	// ErrStopped: the Applier's Run has returned.
	ErrStopped = errors.New("applier stopped")
	// ErrUnknownKind: a manifest's kind is neither served by the cluster
	// nor defined by a CustomResourceDefinition among the manifests.
	ErrUnknownKind = errors.New("unknown kind")
)

// ParseError is a manifest file that cannot be used. Nothing is applied or
// pruned when Parse fails.
type ParseError struct {
	// Path is the file, as given in File.Path.
	Path string
	// Document is the 1-based index of the YAML document in the file (0
	// when the problem is not in one document).
	Document int
	Err      error
}

func (e *ParseError) Error() string {
	if e.Document == 0 {
		return fmt.Sprintf("%s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("%s: document %d: %v", e.Path, e.Document, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }
