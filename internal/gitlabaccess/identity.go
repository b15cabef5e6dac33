package gitlabaccess

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"kubetunnel/agentcfg"
	"kubetunnel/internal/gitlab"
)

// Identity is who agentk impersonates for a GitLab caller. The strings
// and their order are GitLab's agent's, so RBAC written for it works
// unchanged (upstream: constructJobImpersonationConfig and
// constructUserImpersonationConfig in
// internal/module/kubernetes_api/server/proxy.go, GitLab 16.3; agentk
// applies them as rest.ImpersonationConfig in
// internal/module/kubernetes_api/agent/server.go).
type Identity struct {
	User   string
	UID    string
	Groups []string
	// Extra is ordered as upstream builds it.
	Extra []Extra
}

// Extra is one Impersonate-Extra-<key> and its values.
type Extra struct {
	Key    string
	Values []string
}

// ExtraMap is Extra as client-go's rest.ImpersonationConfig takes it.
func (id *Identity) ExtraMap() map[string][]string {
	m := make(map[string][]string, len(id.Extra))
	for _, e := range id.Extra {
		m[e.Key] = append(m[e.Key], e.Values...)
	}
	return m
}

// JobIdentity is the identity for a CI job using agent, from the agent's
// ci_access access_as as GitLab sends it in allowed_agents:
//   - none or agent: nil (the agent's service account);
//   - impersonate: the configured username, uid, groups and extra;
//   - ci_job: user gitlab:ci_job:<job id>, groups gitlab:ci_job, then per
//     project group gitlab:group:<id> (and gitlab:group_env_tier:<id>:<tier>
//     in an environment), then gitlab:project:<id>, then in an environment
//     gitlab:project_env:<id>:<slug> and gitlab:project_env_tier:<id>:<tier>;
//     extra agent.gitlab.com/{id, config_project_id, project_id,
//     ci_pipeline_id, ci_job_id, username} and in an environment
//     agent.gitlab.com/{environment_slug, environment_tier};
//   - ci_user: ErrAccessAs. Upstream documents it as tentative and its
//     agent config schema has it commented out (pkg/agentcfg/agentcfg.proto);
//     allowed_agents does not carry the user's roles it would need.
func JobIdentity(job *gitlab.AllowedAgentsForJob, agent *gitlab.AllowedAgent) (*Identity, error) {
	as, err := parseCIAccessAs(agent.Configuration.AccessAs)
	if err != nil {
		return nil, fmt.Errorf("agent %d: %w", agent.ID, err)
	}
	switch {
	case as == nil || as.Agent != nil:
		return nil, nil
	case as.Impersonate != nil:
		im := as.Impersonate
		id := &Identity{User: im.Username, UID: im.UID, Groups: append([]string(nil), im.Groups...)}
		at := map[string]int{}
		for _, x := range im.Extra {
			e := Extra{Key: x.Key, Values: append([]string(nil), x.Val...)}
			// A repeated key: the last one wins, as in upstream's
			// ImpersonationConfig.GetExtraAsMap.
			if i, ok := at[x.Key]; ok {
				id.Extra[i] = e
				continue
			}
			at[x.Key] = len(id.Extra)
			id.Extra = append(id.Extra, e)
		}
		return checked(id, agent.ID)
	case as.CIJob != nil:
		return checked(ciJobIdentity(job, agent), agent.ID)
	default: // ci_user
		return nil, fmt.Errorf("%w: agent %d: access_as ci_user is not implemented (nor by GitLab's agent): use ci_job or impersonate", ErrAccessAs, agent.ID)
	}
}

// checked refuses an identity that cannot be sent as headers.
func checked(id *Identity, agentID gitlab.ID) (*Identity, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("%w: agent %d: %w", ErrAccessAs, agentID, err)
	}
	return id, nil
}

// parseCIAccessAs decodes ci_access access_as; nil when absent (upstream's
// default: the agent).
func parseCIAccessAs(raw json.RawMessage) (*agentcfg.CIAccessAs, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var as agentcfg.CIAccessAs
	if err := json.Unmarshal(raw, &as); err != nil {
		return nil, fmt.Errorf("%w: access_as from GitLab: %w", ErrAccessAs, err)
	}
	n := 0
	for _, set := range []bool{as.Agent != nil, as.Impersonate != nil, as.CIJob != nil, as.CIUser != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, nil
	case n > 1:
		return nil, fmt.Errorf("%w: access_as from GitLab sets %d modes, at most one is allowed", ErrAccessAs, n)
	case as.Impersonate != nil && as.Impersonate.Username == "":
		return nil, fmt.Errorf("%w: access_as impersonate from GitLab has no username", ErrAccessAs)
	}
	return &as, nil
}

func ciJobIdentity(job *gitlab.AllowedAgentsForJob, agent *gitlab.AllowedAgent) *Identity {
	env := job.Environment
	project := strconv.FormatInt(int64(job.Project.ID), 10)
	groups := make([]string, 0, 4+2*len(job.Project.Groups))
	groups = append(groups, "gitlab:ci_job")
	for _, g := range job.Project.Groups {
		gid := strconv.FormatInt(int64(g.ID), 10)
		groups = append(groups, "gitlab:group:"+gid)
		if env != nil {
			groups = append(groups, "gitlab:group_env_tier:"+gid+":"+env.Tier)
		}
	}
	groups = append(groups, "gitlab:project:"+project)
	if env != nil {
		groups = append(groups, "gitlab:project_env:"+project+":"+env.Slug, "gitlab:project_env_tier:"+project+":"+env.Tier)
	}
	extra := []Extra{
		{"agent.gitlab.com/id", []string{strconv.FormatInt(int64(agent.ID), 10)}},
		{"agent.gitlab.com/config_project_id", []string{strconv.FormatInt(int64(agent.ConfigProject.ID), 10)}},
		{"agent.gitlab.com/project_id", []string{project}},
		{"agent.gitlab.com/ci_pipeline_id", []string{strconv.FormatInt(int64(job.Pipeline.ID), 10)}},
		{"agent.gitlab.com/ci_job_id", []string{strconv.FormatInt(int64(job.Job.ID), 10)}},
		{"agent.gitlab.com/username", []string{job.User.Username}},
	}
	if env != nil {
		extra = append(extra,
			Extra{"agent.gitlab.com/environment_slug", []string{env.Slug}},
			Extra{"agent.gitlab.com/environment_tier", []string{env.Tier}})
	}
	return &Identity{User: "gitlab:ci_job:" + strconv.FormatInt(int64(job.Job.ID), 10), Groups: groups, Extra: extra}
}

// UserIdentity is the identity for a user (PAT or session cookie) from
// authorize_proxy_user's answer; accessType is the access_type kas sent:
//   - access_as agent: nil (the agent's service account);
//   - access_as user: user gitlab:user:<username>, groups gitlab:user,
//     gitlab:project_role:<id>:<role> for each role of each project, then
//     gitlab:group_role:<id>:<role> for each role of each group; extra
//     agent.gitlab.com/{id, username, access_type, config_project_id}.
func UserIdentity(resp *gitlab.AuthorizeProxyUserResponse, accessType string) (*Identity, error) {
	u := resp.AccessAs.User
	switch {
	case resp.AccessAs.Agent != nil && u == nil:
		return nil, nil
	case u == nil || resp.AccessAs.Agent != nil:
		return nil, fmt.Errorf("%w: authorize_proxy_user's access_as needs exactly one of agent and user", ErrAccessAs)
	}
	groups := []string{"gitlab:user"}
	for _, p := range u.Projects {
		for _, role := range p.Roles {
			groups = append(groups, "gitlab:project_role:"+strconv.FormatInt(int64(p.ID), 10)+":"+role)
		}
	}
	for _, g := range u.Groups {
		for _, role := range g.Roles {
			groups = append(groups, "gitlab:group_role:"+strconv.FormatInt(int64(g.ID), 10)+":"+role)
		}
	}
	return checked(&Identity{
		User:   "gitlab:user:" + resp.User.Username,
		Groups: groups,
		Extra: []Extra{
			{"agent.gitlab.com/id", []string{strconv.FormatInt(int64(resp.Agent.ID), 10)}},
			{"agent.gitlab.com/username", []string{resp.User.Username}},
			{"agent.gitlab.com/access_type", []string{accessType}},
			{"agent.gitlab.com/config_project_id", []string{strconv.FormatInt(int64(resp.Agent.ConfigProject.ID), 10)}},
		},
	}, resp.Agent.ID)
}

// SetImpersonationHeaders writes id as Kubernetes impersonation headers
// on h (the request agentk sends to the API server), replacing any
// Impersonate-* header already there. Extra keys are percent-escaped as
// client-go does (agent.gitlab.com/id becomes
// Impersonate-Extra-Agent.gitlab.com%2fid once canonicalized); the API
// server lower-cases and unescapes them.
func (id *Identity) SetImpersonationHeaders(h http.Header) {
	for k := range h {
		if len(k) >= len("Impersonate-") && strings.EqualFold(k[:len("Impersonate-")], "Impersonate-") {
			delete(h, k)
		}
	}
	// Set and Add canonicalize the keys as client-go's transport does;
	// the API server lower-cases extra keys before unescaping them.
	h.Set("Impersonate-User", id.User)
	if id.UID != "" {
		h.Set("Impersonate-Uid", id.UID)
	}
	for _, g := range id.Groups {
		h.Add("Impersonate-Group", g)
	}
	for _, e := range id.Extra {
		for _, v := range e.Values {
			h.Add("Impersonate-Extra-"+escapeExtraKey(e.Key), v)
		}
	}
}

// escapeExtraKey percent-escapes every byte that is not legal in a
// header name, as client-go's transport.headerKeyEscape does; the API
// server unescapes Impersonate-Extra-* keys with url.PathUnescape.
func escapeExtraKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if legalHeaderKeyByte(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func legalHeaderKeyByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&'*+-.^_`|~", c) >= 0
}
