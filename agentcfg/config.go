package agentcfg

// Config is the whole config.yaml. The zero value is a valid, empty
// configuration once Default has filled it.
type Config struct {
	GitOps        GitOps        `yaml:"gitops" json:"gitops"`
	UserAccess    UserAccess    `yaml:"user_access" json:"user_access"`
	Observability Observability `yaml:"observability" json:"observability"`
	CIAccess      CIAccess      `yaml:"ci_access" json:"ci_access"`

	// GitLab's sections this agent does not implement (ignored.go).
	ContainerScanning ContainerScanning `yaml:"container_scanning" json:"-" agentcfg:"ignored"`
	RemoteDevelopment RemoteDevelopment `yaml:"remote_development" json:"-" agentcfg:"ignored"`
	Flux              Flux              `yaml:"flux" json:"-" agentcfg:"ignored"`
	Starboard         ContainerScanning `yaml:"starboard" json:"-" agentcfg:"ignored"`
	Cilium            Cilium            `yaml:"cilium" json:"-" agentcfg:"ignored"`

	// Ignored lists the key paths the file sets that are GitLab's but not
	// implemented here, in file order (see IgnoredWarning). Parse fills it;
	// it travels to agentk so that the agent can say so in its log.
	Ignored []string `yaml:"-" json:"ignored_keys,omitempty"`
}

// GitOps is the gitops section: the manifest projects the agent keeps its
// cluster in sync with.
type GitOps struct {
	ManifestProjects []ManifestProject `yaml:"manifest_projects" json:"manifest_projects"`
	// Charts is GitLab's experimental Helm support (GitLab 15.8 to 16.2).
	Charts []Chart `yaml:"charts" json:"-" agentcfg:"ignored"`
}

// ManifestProject is one repository (and ref) whose manifests the agent
// applies. Empty fields take the defaults in defaults.go.
type ManifestProject struct {
	// ID is a repository id from kas's repositories list. Defaults to the
	// agent's config project.
	ID  string `yaml:"id" json:"id"`
	Ref Ref    `yaml:"ref" json:"ref"`
	// DefaultNamespace is used for namespaced objects that have none.
	DefaultNamespace string `yaml:"default_namespace" json:"default_namespace"`
	// Paths select the files to apply; defaults to every YAML and JSON file.
	Paths            []Path   `yaml:"paths" json:"paths"`
	ReconcileTimeout Duration `yaml:"reconcile_timeout" json:"reconcile_timeout"`
	// DryRunStrategy is one of none, client, server.
	DryRunStrategy string `yaml:"dry_run_strategy" json:"dry_run_strategy"`
	// Prune deletes objects that are no longer in the repository. A pointer
	// because false is a choice and nil means the default (true).
	Prune        *bool    `yaml:"prune" json:"prune"`
	PruneTimeout Duration `yaml:"prune_timeout" json:"prune_timeout"`
	// PrunePropagationPolicy is one of orphan, background, foreground.
	PrunePropagationPolicy string `yaml:"prune_propagation_policy" json:"prune_propagation_policy"`
	// InventoryPolicy is one of must_match, adopt_if_no_inventory, adopt_all.
	InventoryPolicy string `yaml:"inventory_policy" json:"inventory_policy"`
	// ResourceInclusions and ResourceExclusions limit which kinds the agent
	// watches and manages. Empty inclusions include everything; empty
	// exclusions exclude nothing.
	ResourceInclusions []ResourceFilter `yaml:"resource_inclusions" json:"resource_inclusions"`
	ResourceExclusions []ResourceFilter `yaml:"resource_exclusions" json:"resource_exclusions"`

	// Safety keys of kubetunnel (not in upstream's schema); see
	// docs/gitops.md and gitops_safety.go.

	// Name names the project in status, metrics and logs; default
	// "<id>@<default_namespace>". It does not change which objects the
	// project manages.
	Name string `yaml:"name" json:"name,omitempty"`
	// AllowEmpty lets the project's paths select no file (or no object),
	// which then prunes everything the project applied. Off, such a commit
	// applies and prunes nothing and reports no_manifests_matched.
	AllowEmpty bool `yaml:"allow_empty" json:"allow_empty,omitempty"`
	// PreCheck has the API server validate every object of a commit (a
	// server-side dry-run apply) before anything is written; one rejection
	// stops the commit. nil means the default (on).
	PreCheck *bool `yaml:"pre_check" json:"pre_check,omitempty"`
	// ServiceAccount confines the project: its objects are written as this
	// service account ("<name>" in default_namespace, or
	// "<namespace>/<name>"), so it can do only what RBAC lets that account
	// do. Empty: the agent's own rights.
	ServiceAccount string `yaml:"service_account" json:"service_account,omitempty"`
}

// Ref is the git ref to follow: at most one field is set; none means the
// repository's default branch.
type Ref struct {
	Branch string `yaml:"branch" json:"branch,omitempty"`
	Tag    string `yaml:"tag" json:"tag,omitempty"`
	// Commit is a full commit SHA: it pins the manifests.
	Commit string `yaml:"commit" json:"commit,omitempty"`
}

// Path selects files of a manifest project.
type Path struct {
	// Glob is a doublestar pattern relative to the repository root, such as
	// /manifests/**/*.yaml.
	Glob string `yaml:"glob" json:"glob"`
}

// ResourceFilter matches Kubernetes kinds; '*' matches any group or kind.
type ResourceFilter struct {
	APIGroups []string `yaml:"api_groups" json:"api_groups"`
	Kinds     []string `yaml:"kinds" json:"kinds"`
}

// UserAccess is how callers of the Kubernetes API proxy reach the cluster
// through this agent.
type UserAccess struct {
	AccessAs AccessAs `yaml:"access_as" json:"access_as"`
	// Groups, when set, admits only callers in one of these groups (the
	// groups kas gives them: users[].groups in the kas config). agentk
	// enforces it itself, whatever kas lets through. Empty admits every
	// caller kas lets reach this agent.
	Groups []GroupAccess `yaml:"groups" json:"groups,omitempty"`
	// Projects is upstream's grant to the members of GitLab projects:
	// with kas on GitLab, GitLab applies it (authorize_proxy_user);
	// agentk does not enforce it, and standalone it has no effect.
	Projects []ProjectAccess `yaml:"projects" json:"projects,omitempty"`
}

// GroupAccess names a group of callers, in upstream's shape ({id: …}).
type GroupAccess struct {
	ID string `yaml:"id" json:"id"`
}

// Admits reports whether a caller in groups may use the agent.
func (u UserAccess) Admits(groups []string) bool {
	if len(u.Groups) == 0 {
		return true
	}
	for _, g := range u.Groups {
		for _, have := range groups {
			if g.ID == have {
				return true
			}
		}
	}
	return false
}

// AccessAs says whose identity requests carry: exactly one field is set.
type AccessAs struct {
	// Agent: requests use the agent's own service account.
	Agent *AccessAsAgent `yaml:"agent" json:"agent,omitempty"`
	// User: the agent impersonates the caller.
	User *AccessAsUser `yaml:"user" json:"user,omitempty"`
}

// AccessAsAgent has no options; its presence selects the mode.
type AccessAsAgent struct{}

// AccessAsUser has no options; its presence selects the mode.
type AccessAsUser struct{}

// Observability is the agent's logging.
type Observability struct {
	Logging        Logging        `yaml:"logging" json:"logging"`
	GoogleProfiler GoogleProfiler `yaml:"google_profiler" json:"-" agentcfg:"ignored"`
}

// Logging configures agentk's logger.
type Logging struct {
	// Level is one of debug, info, warn, error.
	Level string `yaml:"level" json:"level"`
	// GRPCLevel is upstream's level for gRPC's own logs, which agentk does
	// not route to its log.
	GRPCLevel string `yaml:"grpc_level" json:"grpc_level,omitempty" agentcfg:"ignored"`
}
