package gitlabaccess

import (
	"errors"
	"net/http"
)

// Errors callers branch on; StatusCode maps them to HTTP answers.
var (
	// ErrNotGitLab: the request carries no GitLab credential. Not a
	// refusal: the caller tries its other authentication (static users).
	ErrNotGitLab = errors.New("no GitLab credential")
	// ErrMalformed: something shaped like a GitLab credential that cannot
	// be used (bad agent id, empty token, missing CSRF token…). 401.
	ErrMalformed = errors.New("malformed GitLab credential")
	// ErrUnauthorized: GitLab does not know the credential (an unknown or
	// expired job token, a revoked PAT, a session cookie with a wrong
	// CSRF token). 401.
	ErrUnauthorized = errors.New("GitLab refused the credential")
	// ErrForbidden: the credential is good but may not use this agent
	// (the agent is missing from the job's allowed_agents). 403.
	ErrForbidden = errors.New("the credential may not use this agent")
	// ErrUnavailable: GitLab gave no usable answer and none is cached. 503.
	ErrUnavailable = errors.New("GitLab is unavailable and no answer for this credential is cached")
	// ErrAccessAs: GitLab allowed the caller but the agent's access_as
	// cannot be applied (ci_user, which GitLab's agent does not implement
	// either, or an unknown mode). 500.
	ErrAccessAs = errors.New("cannot apply the agent's access_as")
)

// StatusCode is the HTTP status for an error of this package: 401, 403,
// 503, 500; 0 for ErrNotGitLab and nil (no answer to send yet).
func StatusCode(err error) int {
	switch {
	case err == nil, errors.Is(err, ErrNotGitLab):
		return 0
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
