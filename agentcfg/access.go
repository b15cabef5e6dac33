package agentcfg

import "fmt"

// CIAccess is the ci_access section of GitLab's agent: which CI/CD jobs may
// reach the cluster through the agent, and as whom. It is parsed and
// validated as upstream does, and carried to agentk, but not enforced yet
// (see Ignored).
type CIAccess struct {
	Projects []CIAccessEntry `yaml:"projects" json:"projects"`
	Groups   []CIAccessEntry `yaml:"groups" json:"groups"`
}

// CIAccessEntry authorizes the jobs of one project, or of every project in
// one group (and its subgroups). Upstream's project and group entries have
// the same keys.
type CIAccessEntry struct {
	// ID is the project or group full path, such as group/project.
	ID               string      `yaml:"id" json:"id"`
	DefaultNamespace string      `yaml:"default_namespace" json:"default_namespace,omitempty"`
	AccessAs         *CIAccessAs `yaml:"access_as" json:"access_as,omitempty"`
	// Environments limits access to jobs of these environments (names or
	// wildcards such as review/*).
	Environments []string `yaml:"environments" json:"environments,omitempty"`
}

// CIAccessAs says whose identity a CI job's requests carry: at most one
// field is set; none means the agent's own.
type CIAccessAs struct {
	Agent       *AccessAsAgent       `yaml:"agent" json:"agent,omitempty"`
	Impersonate *CIAccessImpersonate `yaml:"impersonate" json:"impersonate,omitempty"`
	CIJob       *CIAccessAsCIJob     `yaml:"ci_job" json:"ci_job,omitempty"`
	CIUser      *CIAccessAsCIUser    `yaml:"ci_user" json:"ci_user,omitempty"`
}

// CIAccessImpersonate is a fixed identity for every job of the entry.
type CIAccessImpersonate struct {
	Username string          `yaml:"username" json:"username"`
	Groups   []string        `yaml:"groups" json:"groups,omitempty"`
	UID      string          `yaml:"uid" json:"uid,omitempty"`
	Extra    []ExtraKeyValue `yaml:"extra" json:"extra,omitempty"`
}

// ExtraKeyValue is one Impersonate-Extra-<key> header and its values.
type ExtraKeyValue struct {
	Key string   `yaml:"key" json:"key"`
	Val []string `yaml:"val" json:"val"`
}

// CIAccessAsCIJob impersonates the job (gitlab:ci_job:<id>); no options.
type CIAccessAsCIJob struct{}

// CIAccessAsCIUser impersonates the user who runs the job; no options.
type CIAccessAsCIUser struct{}

// ProjectAccess names a GitLab project whose members may use the agent
// (user_access.projects).
type ProjectAccess struct {
	ID string `yaml:"id" json:"id"`
}

func (c *CIAccess) validate(v *validator) {
	for i, p := range c.Projects {
		p.validate(v, fmt.Sprintf("ci_access.projects[%d]", i))
	}
	for i, g := range c.Groups {
		g.validate(v, fmt.Sprintf("ci_access.groups[%d]", i))
	}
}

// validate checks what upstream's schema requires, no more: a file GitLab's
// agent accepts must not be refused here.
func (e CIAccessEntry) validate(v *validator, path string) {
	if e.ID == "" {
		v.fail(path+".id", "required: the full path of a project or group, such as group/project")
	}
	for i, env := range e.Environments {
		if env == "" {
			v.fail(fmt.Sprintf("%s.environments[%d]", path, i), "empty environment name")
		}
	}
	if a := e.AccessAs; a != nil {
		var set []string
		for _, f := range []struct {
			key string
			set bool
		}{{"agent", a.Agent != nil}, {"impersonate", a.Impersonate != nil}, {"ci_job", a.CIJob != nil}, {"ci_user", a.CIUser != nil}} {
			if f.set {
				set = append(set, f.key)
			}
		}
		switch {
		case len(set) == 0:
			v.fail(path+".access_as", "set one of agent: {}, impersonate: {…}, ci_job: {}, ci_user: {}")
		case len(set) > 1:
			v.fail(path+".access_as", "set only one of agent, impersonate, ci_job, ci_user (found %s)", joinKeys(set))
		}
		if im := a.Impersonate; im != nil {
			ip := path + ".access_as.impersonate"
			if im.Username == "" {
				v.fail(ip+".username", "required: the user to impersonate")
			}
			for i, g := range im.Groups {
				if g == "" {
					v.fail(fmt.Sprintf("%s.groups[%d]", ip, i), "empty group name")
				}
			}
			for i, x := range im.Extra {
				xp := fmt.Sprintf("%s.extra[%d]", ip, i)
				if x.Key == "" {
					v.fail(xp+".key", "required")
				}
				if len(x.Val) == 0 {
					v.fail(xp+".val", "required: at least one value")
				}
				for j, val := range x.Val {
					if val == "" {
						v.fail(fmt.Sprintf("%s.val[%d]", xp, j), "empty value")
					}
				}
			}
		}
	}
}
