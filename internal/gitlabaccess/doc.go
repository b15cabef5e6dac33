// Package gitlabaccess lets GitLab's callers reach clusters through kas's
// Kubernetes API listener, as GitLab's own kas does: CI jobs with the
// kubeconfig GitLab injects, and GitLab users with a personal access token
// or GitLab's session cookie (the Kubernetes dashboard in the browser).
//
// Its parts, each usable alone:
//
//   - ParseCredential reads a request's GitLab credential:
//     "Authorization: Bearer ci:<agent id>:<CI_JOB_TOKEN>",
//     "Authorization: Bearer pat:<agent id>:<token>", or the _gitlab_kas
//     cookie with Gitlab-Agent-Id and X-Csrf-Token (headers, or the
//     gitlab-agent-id and gitlab-csrf-token query parameters).
//     ErrNotGitLab means "not ours, try static users"; ErrMalformed is 401.
//   - Authorizer asks GitLab: allowed_agents for a CI job (by its job
//     token), authorize_proxy_user for PATs and cookies. Answers are
//     cached as upstream does: GitLab's yes for 60 s, its refusals for
//     10 s, outages not at all; keyed by a SHA-256 of the credential.
//     Errors wrap ErrUnauthorized (401), ErrForbidden (403),
//     ErrUnavailable (503) or ErrAccessAs (500); StatusCode maps them.
//   - JobIdentity and UserIdentity build the identity agentk impersonates
//     with GitLab's exact strings (gitlab:ci_job:<id>, gitlab:user:<name>,
//     gitlab:project_env_tier:<id>:<tier>, agent.gitlab.com/* extra …),
//     and Identity.SetImpersonationHeaders writes it on the request to the
//     API server.
//
// StripCredentials removes the GitLab credential headers and query
// parameters before a request goes on. CORS answers browsers calling
// from gitlab.external_url (preflight, credentials, Vary: Origin) and
// refuses other origins; StripClusterCORS drops the cluster's own CORS
// headers from its answers.
//
// # Where this differs from upstream (GitLab 16.3-16.5), on purpose
//
//   - A 404 from allowed_agents is 401 here (upstream passes 404 on): to
//     the caller it is an unknown job token.
//   - An Authorization header that is not ci:/pat: is not an error but
//     ErrNotGitLab (upstream has no other callers); a GitLab bearer token
//     beside a _gitlab_kas cookie wins, as in upstream's code (its doc
//     says the two may not be combined).
//   - access_as ci_user is refused with ErrAccessAs: upstream documents it
//     as tentative and its schema has it commented out.
//   - Answers are never used past their TTL, even when GitLab is down.
//   - User access extra is upstream's {id, username, access_type,
//     config_project_id}, not the CI job's set (GITLAB.md says "as above").
//
// # Wiring
//
// kasproxy (GitLabAccess) uses it on the Kubernetes API listener under
// agent.kubernetes_api.url_path_prefix: CORS first, then ParseCredential
// (ErrNotGitLab: the static users' /agents/<name>/ path), Authorize
// (errors answered with StatusCode and Gitlab-Unauthorized on 401s),
// routing to the agent of the grant, StripCredentials and
// StripClusterCORS. The identity travels to agentk in the
// Kas-Gitlab-Identity tunnel header (HeaderValue, or "agent" for the
// agent's own service account); agentk decodes it with
// ParseIdentityHeader (400 when it does not parse) and calls
// SetImpersonationHeaders. GitLab applies config.yaml's
// ci_access/user_access rules; kas applies only access_as, which arrives
// in GitLab's answers. User docs: docs/ci-user-access.md.
package gitlabaccess
