package agentcfg

import (
	"fmt"
	"regexp"
)

// DefaultPreCheck: every object of a commit is validated by the API server
// before anything is written.
const DefaultPreCheck = true

// projectNameRE is what a manifest project's name may be: it ends up in
// metric labels and log lines.
var projectNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,98}[A-Za-z0-9])?$`)

// DisplayName is how status, metrics and logs name the project: its name,
// or "<id>@<default_namespace>" (two projects may share an id, not both).
func (p ManifestProject) DisplayName() string {
	if p.Name != "" {
		return p.Name
	}
	return p.ID + "@" + p.DefaultNamespace
}

// PreCheckEnabled is the pre_check setting with its default.
func (p ManifestProject) PreCheckEnabled() bool {
	if p.PreCheck == nil {
		return DefaultPreCheck
	}
	return *p.PreCheck
}

// validateSafety checks the keys of the GitOps safety settings.
func (p *ManifestProject) validateSafety(v *validator, path string) {
	if p.Name != "" && !projectNameRE.MatchString(p.Name) {
		v.fail(path+".name", "%q: use 1-100 letters, digits, '.', '_', '-' or '/', starting and ending with a letter or digit", p.Name)
	}
}

// validateNames checks that no two projects show under the same name.
func (c *Config) validateNames(v *validator) {
	seen := map[string]int{}
	for i, p := range c.GitOps.ManifestProjects {
		n := p.DisplayName()
		// Two unnamed projects with one name have the same id and
		// default_namespace, which validate reports.
		if j, dup := seen[n]; dup && (p.Name != "" || c.GitOps.ManifestProjects[j].Name != "") {
			v.fail(fmt.Sprintf("gitops.manifest_projects[%d].name", i), "%q is also the name of gitops.manifest_projects[%d]: names must differ", n, j)
			continue
		}
		seen[n] = i
	}
}
