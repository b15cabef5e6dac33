package agentcfg

import "time"

// The defaults of config.yaml, in one place. They are the GitLab agent's.
const (
	DefaultGlob                   = "/**/*.{yaml,yml,json}"
	DefaultNamespace              = "default"
	DefaultReconcileTimeout       = 3600 * time.Second
	DefaultDryRunStrategy         = DryRunNone
	DefaultPrune                  = true
	DefaultPruneTimeout           = 3600 * time.Second
	DefaultPrunePropagationPolicy = PropagationForeground
	DefaultInventoryPolicy        = InventoryMustMatch
	DefaultLogLevel               = LogInfo
)

// Allowed values of the enumerated keys.
const (
	DryRunNone   = "none"
	DryRunClient = "client"
	DryRunServer = "server"

	PropagationOrphan     = "orphan"
	PropagationBackground = "background"
	PropagationForeground = "foreground"

	InventoryMustMatch          = "must_match"
	InventoryAdoptIfNoInventory = "adopt_if_no_inventory"
	InventoryAdoptAll           = "adopt_all"

	LogDebug = "debug"
	LogInfo  = "info"
	LogWarn  = "warn"
	LogError = "error"
)

// Default fills every unset key with its default. configProject is the id
// of the repository holding config.yaml: manifest projects without an id
// use it. Default is idempotent and leaves set values alone, invalid ones
// included (Validate reports those).
func (c *Config) Default(configProject string) {
	for i := range c.GitOps.ManifestProjects {
		c.GitOps.ManifestProjects[i].Default(configProject)
	}
	if c.UserAccess.AccessAs.Agent == nil && c.UserAccess.AccessAs.User == nil {
		c.UserAccess.AccessAs.Agent = &AccessAsAgent{}
	}
	if c.Observability.Logging.Level == "" {
		c.Observability.Logging.Level = DefaultLogLevel
	}
}

// Default fills the unset keys of one manifest project.
func (p *ManifestProject) Default(configProject string) {
	if p.ID == "" {
		p.ID = configProject
	}
	if p.DefaultNamespace == "" {
		p.DefaultNamespace = DefaultNamespace
	}
	if len(p.Paths) == 0 {
		p.Paths = []Path{{Glob: DefaultGlob}}
	}
	if p.ReconcileTimeout.Duration == 0 {
		p.ReconcileTimeout.Duration = DefaultReconcileTimeout
	}
	if p.DryRunStrategy == "" {
		p.DryRunStrategy = DefaultDryRunStrategy
	}
	if p.Prune == nil {
		prune := DefaultPrune
		p.Prune = &prune
	}
	if p.PruneTimeout.Duration == 0 {
		p.PruneTimeout.Duration = DefaultPruneTimeout
	}
	if p.PrunePropagationPolicy == "" {
		p.PrunePropagationPolicy = DefaultPrunePropagationPolicy
	}
	if p.InventoryPolicy == "" {
		p.InventoryPolicy = DefaultInventoryPolicy
	}
}
