package apply

import (
	"errors"
	"fmt"
	"strings"
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
	// ErrNoManifests: a project's paths select no file or no object, and
	// allow_empty is off; nothing was applied or pruned.
	ErrNoManifests = errors.New("no manifests matched")
	// ErrDependencyCycle: config.kubernetes.io/depends-on annotations form
	// a cycle.
	ErrDependencyCycle = errors.New("depends-on cycle")
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

// CheckError is the pre-check's rejection of a commit: the API server
// refused objects in a dry run, so nothing was applied or pruned.
type CheckError struct {
	// Rejections are the refused objects, in manifest order.
	Rejections []Rejection
}

// Rejection is one object the API server refused in the pre-check.
type Rejection struct {
	// Path and Document say where the object is (Document is 1-based; 0
	// when not known); Object names it ("Deployment ns/web").
	Path     string
	Document int
	Object   string
	Err      error
}

func (r Rejection) String() string {
	where := r.Path
	if r.Document > 0 {
		where = fmt.Sprintf("%s: document %d", r.Path, r.Document)
	}
	if where == "" {
		return fmt.Sprintf("%s: %v", r.Object, r.Err)
	}
	return fmt.Sprintf("%s: %s: %v", where, r.Object, r.Err)
}

func (e *CheckError) Error() string {
	const show = 5
	var b strings.Builder
	fmt.Fprintf(&b, "pre-check: the API server rejected %d object(s); nothing was applied or pruned: ", len(e.Rejections))
	for i, r := range e.Rejections {
		if i == show {
			fmt.Fprintf(&b, "; and %d more", len(e.Rejections)-show)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.String())
	}
	return b.String()
}
