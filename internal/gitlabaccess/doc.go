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
// # Wiring (not done yet)
//
// Nothing in kas or agentk uses this package yet. The plan:
//
// kasproxy, on the Kubernetes API listener under
// agent.kubernetes_api.url_path_prefix:
//
//  0. cors.Handle(w, r) first (cors from NewCORS(gitlab.external_url));
//     when it returns true the request is answered.
//  1. cred, err := ParseCredential(r). ErrNotGitLab: the existing static
//     users path (/agents/<name>/) as today. Any other error: a
//     Kubernetes Status with StatusCode(err) (401) and, as upstream, the
//     header HeaderUnauthorized (Gitlab-Unauthorized: true) on 401s.
//  2. grant, err := authorizer.Authorize(ctx, cred), one Authorizer per kas
//     built on kas's *gitlab.Client. Errors: StatusCode(err) and
//     err.Error() as the Status message (it names no secret).
//  3. Route to agent grant.AgentID (the agent comes from the credential,
//     not from the path); StripCredentials(r) and
//     kubehttp.StripCallerHeaders(r.Header); refuse caller Impersonate-*
//     headers (GITLAB.md: refused by default even with access_as agent).
//  4. Carry grant.Identity to agentk. The tunnel today carries only
//     Kas-Proxy-User and Kas-Proxy-Group; the identity needs uid and
//     ordered extra too: Identity.HeaderValue encodes it for one new
//     tunnel header (its name belongs in tunnel/const.go and
//     tunnel/PROTOCOL.md), ParseIdentityHeader (fuzzed, bounded) decodes
//     it in agentk. grant.Identity == nil means the agent's own service
//     account: send no such header.
//     On the cluster's answer (ReverseProxy.ModifyResponse), call
//     StripClusterCORS.
//  5. Audit and usage counters from grant.Kind, grant.Username,
//     grant.JobID and grant.AgentID.
//
// agentk, in its forwarder: decode the identity kas sent
// (ParseIdentityHeader; refuse the request with 400 if it does not parse)
// and call Identity.SetImpersonationHeaders on the outgoing request after
// kubehttp.StripCallerHeaders; with no identity, send the request as the
// agent. (Upstream agentk does the same through rest.ImpersonationConfig,
// which escapes extra keys as SetImpersonationHeaders does.) The
// Kas-Proxy-User path (static users, user_access.groups admission) stays
// as it is for static callers: GitLab callers were admitted by GitLab.
//
// The config.yaml ci_access/user_access checks are GitLab's (it answers
// allowed_agents and authorize_proxy_user from them); kas applies only
// access_as, which arrives in those answers. The user docs page (config
// examples, identities table, RBAC) is for the wiring step, when a test
// shows it end to end.
package gitlabaccess
