package apply

import (
	"errors"
	"time"
)

// Failure says what kind of failure a Result is, so that a caller knows
// whether and when to retry.
type Failure string

const (
	// FailureNone: the sync succeeded.
	FailureNone Failure = ""
	// FailureRetryable: the cluster or the connection to it failed (an API
	// error, a timeout, the cluster cache not ready). Retry with backoff.
	FailureRetryable Failure = "retryable"
	// FailureObjects: some objects were not applied (the API server
	// refused them at apply time, inventory_policy refused them, a hook
	// failed) while the others were. Retry with backoff: a conflict may
	// clear.
	FailureObjects Failure = "objects"
	// FailureStalled: the commit or the project's settings cannot be
	// applied as they are (a manifest does not parse, the pre-check
	// rejected an object, an unknown kind, a depends-on cycle). Nothing
	// was written; it fails the same way until the manifests, the config
	// or the cluster change.
	FailureStalled Failure = "stalled"
	// FailureNoManifests: the project's paths select no file, or the files
	// hold no object, and allow_empty is off. Nothing was applied or
	// pruned.
	FailureNoManifests Failure = "no_manifests_matched"
)

// Retryable reports whether a caller should retry the same commit with
// backoff (a stalled or empty commit is retried only when something
// changes).
func (f Failure) Retryable() bool {
	return f == FailureRetryable || f == FailureObjects
}

// PendingPrune is an object a project pruned that is still there: it has
// finalizers, or foreground deletion waits for its dependents. A newer
// commit does not wait for it.
type PendingPrune struct {
	// Object names it: "Kind namespace/name".
	Object string
	// Finalizers are what it waits for ("foregroundDeletion" for a
	// foreground deletion).
	Finalizers []string
	// Since is its deletionTimestamp.
	Since time.Time
}

// failureOf classifies an error Sync returned before or instead of
// syncing.
func failureOf(err error) Failure {
	var pe *ParseError
	var ce *CheckError
	switch {
	case err == nil:
		return FailureNone
	case errors.As(err, &pe), errors.As(err, &ce), errors.Is(err, ErrInvalidProject), errors.Is(err, ErrUnknownKind), errors.Is(err, ErrDependencyCycle):
		return FailureStalled
	case errors.Is(err, ErrNoManifests):
		return FailureNoManifests
	}
	return FailureRetryable
}
