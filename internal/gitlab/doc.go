// Package gitlab is kas's client for GitLab's internal Kubernetes agent
// API (/api/v4/internal/kubernetes/...), and the JWTs both sides use.
//
// Every call carries the Gitlab-Kas-Api-Request header: an HS256 JWT with
// iss gitlab-kas and aud gitlab, signed with the base64-decoded content of
// GitLab's .gitlab_kas_secret. GitLab answers 401, 403 or 404 to refuse;
// those map to the sentinel errors below, anything else that fails (no
// answer, 5xx, a malformed body) is ErrUnavailable.
package gitlab
