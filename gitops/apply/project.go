package apply

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"kubetunnel/agentcfg"
)

// Project is how one manifest project is applied: the apply-side keys of
// agentcfg.ManifestProject. Zero values take agentcfg's defaults, except
// Prune, whose zero value (false) is a choice.
type Project struct {
	// ID is the manifest project's repository id. With the agent's name and
	// DefaultNamespace it makes the mark that says which objects the
	// project manages.
	ID string
	// DefaultNamespace is given to namespaced objects that have none.
	DefaultNamespace string
	// Prune deletes objects the project managed that its manifests no
	// longer contain.
	Prune bool
	// PruneTimeout bounds the wait for pruned objects to be gone.
	PruneTimeout time.Duration
	// ReconcileTimeout bounds one Sync: waves, hooks and the waits between.
	ReconcileTimeout time.Duration
	// PrunePropagationPolicy is orphan, background or foreground.
	// Foreground and background need the cluster's garbage collector.
	PrunePropagationPolicy string
	// InventoryPolicy says which existing objects a project may take over:
	// must_match (only its own), adopt_if_no_inventory (its own and
	// objects no project manages) or adopt_all (any).
	InventoryPolicy string
	// DryRunStrategy none applies; client or server only report what
	// would be applied and pruned (server asks the API server, which
	// validates each object; client checks only that its kind exists).
	DryRunStrategy string
	// ResourceInclusions and ResourceExclusions limit the kinds the
	// project applies, prunes and the agent watches. Empty inclusions
	// include every kind.
	ResourceInclusions []Filter
	ResourceExclusions []Filter
	// Name names the project in logs (default "<id>@<default namespace>");
	// it does not change the mark.
	Name string
	// Paths are the project's globs. SyncFiles refuses a commit in which
	// one of them selects no file, unless AllowEmpty.
	Paths []string
	// AllowEmpty lets a glob select no file and the project hold no object
	// (then, with Prune, everything the project applied is pruned).
	AllowEmpty bool
	// SkipPreCheck writes without first having the API server validate
	// every object of the commit (pre_check: false).
	SkipPreCheck bool
	// ServiceAccount, "<namespace>/<name>", is who the project's writes
	// (pre-check, applies, prunes) are sent as, by impersonation: the
	// project can do only what that service account may. "" writes with
	// the agent's own identity.
	ServiceAccount string
}

// Filter matches kinds by API group and kind. '*' (or any path.Match
// pattern) matches many; "" is the core group. An empty list matches all.
type Filter struct {
	APIGroups []string
	Kinds     []string
}

// ProjectFromConfig converts a manifest project of config.yaml. It
// assumes agentcfg's Default has run; remaining zero values still get the
// defaults in Sync.
func ProjectFromConfig(p agentcfg.ManifestProject) Project {
	conv := func(fs []agentcfg.ResourceFilter) []Filter {
		var out []Filter
		for _, f := range fs {
			out = append(out, Filter{APIGroups: slices.Clone(f.APIGroups), Kinds: slices.Clone(f.Kinds)})
		}
		return out
	}
	prune := agentcfg.DefaultPrune
	if p.Prune != nil {
		prune = *p.Prune
	}
	globs := make([]string, 0, len(p.Paths))
	for _, g := range p.Paths {
		globs = append(globs, g.Glob)
	}
	return Project{
		ID:                     p.ID,
		DefaultNamespace:       p.DefaultNamespace,
		Prune:                  prune,
		PruneTimeout:           p.PruneTimeout.Duration,
		ReconcileTimeout:       p.ReconcileTimeout.Duration,
		PrunePropagationPolicy: p.PrunePropagationPolicy,
		InventoryPolicy:        p.InventoryPolicy,
		DryRunStrategy:         p.DryRunStrategy,
		ResourceInclusions:     conv(p.ResourceInclusions),
		ResourceExclusions:     conv(p.ResourceExclusions),
		Name:                   p.DisplayName(),
		Paths:                  globs,
		AllowEmpty:             p.AllowEmpty,
		SkipPreCheck:           !p.PreCheckEnabled(),
		ServiceAccount:         p.ServiceAccountRef(),
	}
}

// withDefaults fills zero values with agentcfg's defaults.
func (p Project) withDefaults() Project {
	if p.DefaultNamespace == "" {
		p.DefaultNamespace = agentcfg.DefaultNamespace
	}
	if p.PruneTimeout <= 0 {
		p.PruneTimeout = agentcfg.DefaultPruneTimeout
	}
	if p.ReconcileTimeout <= 0 {
		p.ReconcileTimeout = agentcfg.DefaultReconcileTimeout
	}
	if p.PrunePropagationPolicy == "" {
		p.PrunePropagationPolicy = agentcfg.DefaultPrunePropagationPolicy
	}
	if p.InventoryPolicy == "" {
		p.InventoryPolicy = agentcfg.DefaultInventoryPolicy
	}
	if p.DryRunStrategy == "" {
		p.DryRunStrategy = agentcfg.DefaultDryRunStrategy
	}
	if p.Name == "" {
		p.Name = p.ID + "@" + p.DefaultNamespace
	}
	return p
}

// validate checks the enumerated keys, naming the key like config.yaml.
func (p Project) validate() error {
	if p.ID == "" {
		return fmt.Errorf("%w: id: missing", ErrInvalidProject)
	}
	for _, k := range []struct {
		key, value string
		allowed    []string
	}{
		{"prune_propagation_policy", p.PrunePropagationPolicy, []string{agentcfg.PropagationOrphan, agentcfg.PropagationBackground, agentcfg.PropagationForeground}},
		{"inventory_policy", p.InventoryPolicy, []string{agentcfg.InventoryMustMatch, agentcfg.InventoryAdoptIfNoInventory, agentcfg.InventoryAdoptAll}},
		{"dry_run_strategy", p.DryRunStrategy, []string{agentcfg.DryRunNone, agentcfg.DryRunClient, agentcfg.DryRunServer}},
	} {
		if !slices.Contains(k.allowed, k.value) {
			return fmt.Errorf("%w: project %s: %s: %q is not one of %v", ErrInvalidProject, p.ID, k.key, k.value, k.allowed)
		}
	}
	if p.ServiceAccount != "" {
		ns, name, ok := strings.Cut(p.ServiceAccount, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("%w: project %s: service_account %q: want <namespace>/<name>", ErrInvalidProject, p.ID, p.ServiceAccount)
		}
	}
	for _, fs := range [][]Filter{p.ResourceInclusions, p.ResourceExclusions} {
		for _, f := range fs {
			for _, pat := range append(slices.Clone(f.APIGroups), f.Kinds...) {
				if _, err := path.Match(pat, ""); err != nil {
					return fmt.Errorf("%w: project %s: resource filter pattern %q: %v", ErrInvalidProject, p.ID, pat, err)
				}
			}
		}
	}
	return nil
}

// manages reports whether the project applies and prunes objects of the
// group and kind: included (or no inclusions) and not excluded.
func (p Project) manages(group, kind string) bool {
	if len(p.ResourceInclusions) > 0 && !anyMatch(p.ResourceInclusions, group, kind) {
		return false
	}
	return !anyMatch(p.ResourceExclusions, group, kind)
}

func anyMatch(fs []Filter, group, kind string) bool {
	for _, f := range fs {
		if f.match(group, kind) {
			return true
		}
	}
	return false
}

func (f Filter) match(group, kind string) bool {
	return matchAny(f.APIGroups, group) && matchAny(f.Kinds, kind)
}

func matchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if p == s || p == "*" {
			return true
		}
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// mark is the value of AnnotationManagedBy on the objects a project
// manages: the agent, the project and its default namespace, so that two
// projects (or one project twice with different default namespaces) never
// prune each other's objects. Agent names and namespaces contain no '/',
// so the value is unambiguous whatever the project id holds.
func mark(agent string, p Project) string {
	return agent + "/" + p.ID + "/" + p.DefaultNamespace
}
