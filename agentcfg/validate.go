package agentcfg

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

var (
	// A namespace name is a DNS-1123 label.
	namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// A full SHA-1 or SHA-256 object name: a prefix cannot be resolved
	// without the repository, and would be ambiguous as it grows.
	commitRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
)

var (
	dryRunStrategies    = []string{DryRunNone, DryRunClient, DryRunServer}
	propagationPolicies = []string{PropagationOrphan, PropagationBackground, PropagationForeground}
	inventoryPolicies   = []string{InventoryMustMatch, InventoryAdoptIfNoInventory, InventoryAdoptAll}
	logLevels           = []string{LogDebug, LogInfo, LogWarn, LogError}
)

// Validate checks a defaulted configuration (see Default) and names the key
// path of every problem, several joined with errors.Join.
func (c *Config) Validate() error {
	return joinErrors(c.validate())
}

func (c *Config) validate() []*Error {
	var v validator
	type projectKey struct{ id, namespace string }
	first := make(map[projectKey]int)
	for i := range c.GitOps.ManifestProjects {
		p := &c.GitOps.ManifestProjects[i]
		path := fmt.Sprintf("gitops.manifest_projects[%d]", i)
		p.validate(&v, path)
		// Objects are marked per manifest project and namespace; two entries
		// with the same mark would prune each other's objects.
		k := projectKey{p.ID, p.DefaultNamespace}
		if j, dup := first[k]; dup {
			v.fail(path, "same id and default_namespace as gitops.manifest_projects[%d]: merge their paths into one entry", j)
		} else {
			first[k] = i
		}
	}
	c.validateNames(&v)
	a := c.UserAccess.AccessAs
	switch {
	case a.Agent != nil && a.User != nil:
		v.fail("user_access.access_as", "set only one of agent, user")
	case a.Agent == nil && a.User == nil:
		v.fail("user_access.access_as", "set one of agent: {}, user: {}")
	}
	for i, g := range c.UserAccess.Groups {
		if g.ID == "" {
			v.fail(fmt.Sprintf("user_access.groups[%d].id", i), "required: the name of a group of callers")
		}
	}
	for i, p := range c.UserAccess.Projects {
		if p.ID == "" {
			v.fail(fmt.Sprintf("user_access.projects[%d].id", i), "required: the full path of a project")
		}
	}
	c.CIAccess.validate(&v)
	v.oneOf("observability.logging.level", c.Observability.Logging.Level, logLevels)
	if l := c.Observability.Logging.GRPCLevel; l != "" {
		v.oneOf("observability.logging.grpc_level", l, logLevels)
	}
	return v.errs
}

func (p *ManifestProject) validate(v *validator, path string) {
	if p.ID == "" {
		v.fail(path+".id", "required: the id of a repository that kas knows")
	}
	p.Ref.validate(v, path+".ref")
	if !namespaceRE.MatchString(p.DefaultNamespace) || len(p.DefaultNamespace) > 63 {
		v.fail(path+".default_namespace", "%q is not a namespace name: use at most 63 lower case letters, digits and '-', starting and ending with a letter or digit", p.DefaultNamespace)
	}
	if len(p.Paths) == 0 {
		v.fail(path+".paths", "required: at least one glob")
	}
	for j, g := range p.Paths {
		gp := fmt.Sprintf("%s.paths[%d].glob", path, j)
		switch {
		case g.Glob == "":
			v.fail(gp, "required, such as %s", DefaultGlob)
		case !doublestar.ValidatePattern(g.Glob):
			v.fail(gp, "%q is not a valid glob: check its brackets and braces", g.Glob)
		}
	}
	v.positive(path+".reconcile_timeout", p.ReconcileTimeout)
	v.oneOf(path+".dry_run_strategy", p.DryRunStrategy, dryRunStrategies)
	if p.Prune == nil {
		v.fail(path+".prune", "required: true or false")
	}
	v.positive(path+".prune_timeout", p.PruneTimeout)
	v.oneOf(path+".prune_propagation_policy", p.PrunePropagationPolicy, propagationPolicies)
	v.oneOf(path+".inventory_policy", p.InventoryPolicy, inventoryPolicies)
	p.validateSafety(v, path)
	for j, f := range p.ResourceInclusions {
		f.validate(v, fmt.Sprintf("%s.resource_inclusions[%d]", path, j))
	}
	for j, f := range p.ResourceExclusions {
		f.validate(v, fmt.Sprintf("%s.resource_exclusions[%d]", path, j))
	}
}

func (r Ref) validate(v *validator, path string) {
	var set []string
	for _, f := range []struct{ key, value string }{{"branch", r.Branch}, {"tag", r.Tag}, {"commit", r.Commit}} {
		if f.value != "" {
			set = append(set, f.key)
		}
	}
	if len(set) > 1 {
		v.fail(path, "set only one of branch, tag, commit (found %s)", strings.Join(set, ", "))
	}
	if r.Commit != "" && !commitRE.MatchString(r.Commit) {
		v.fail(path+".commit", "%q is not a full commit SHA: use all 40 hex digits, lower case", r.Commit)
	}
}

func (f ResourceFilter) validate(v *validator, path string) {
	if len(f.Kinds) == 0 {
		v.fail(path+".kinds", "required: list kinds, or ['*'] for all")
	}
	for i, k := range f.Kinds {
		if k == "" {
			v.fail(fmt.Sprintf("%s.kinds[%d]", path, i), "empty kind: use '*' for all")
		}
	}
	if len(f.APIGroups) == 0 {
		v.fail(path+".api_groups", "required: list API groups ('' is the core group), or ['*'] for all")
	}
}

// validator collects problems instead of stopping at the first, so one
// round of edits can fix them all.
type validator struct {
	errs []*Error
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, keyError(0, path, fmt.Sprintf(format, args...)))
}

func (v *validator) oneOf(path, value string, allowed []string) {
	if !slices.Contains(allowed, value) {
		v.fail(path, "%q is not one of %s", value, strings.Join(allowed, ", "))
	}
}

func (v *validator) positive(path string, d Duration) {
	if d.Duration <= 0 {
		v.fail(path, "%s is not a positive duration: use e.g. 3600s", d)
	}
}
