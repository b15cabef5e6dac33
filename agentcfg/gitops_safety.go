package agentcfg

import (
	"fmt"
	"regexp"
	"strings"
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

// ServiceAccountRef is service_account as "<namespace>/<name>" (the
// namespace defaults to default_namespace), or "".
func (p ManifestProject) ServiceAccountRef() string {
	if p.ServiceAccount == "" || strings.Contains(p.ServiceAccount, "/") {
		return p.ServiceAccount
	}
	return p.DefaultNamespace + "/" + p.ServiceAccount
}

// validateSafety checks the keys of the GitOps safety settings.
func (p *ManifestProject) validateSafety(v *validator, path string) {
	if p.Name != "" && !projectNameRE.MatchString(p.Name) {
		v.fail(path+".name", "%q: use 1-100 letters, digits, '.', '_', '-' or '/', starting and ending with a letter or digit", p.Name)
	}
	if p.ServiceAccount != "" {
		ns, name, found := strings.Cut(p.ServiceAccount, "/")
		if !found {
			ns, name = "", ns
		}
		if (found && !dnsLabelRE.MatchString(ns)) || !dnsSubdomainRE.MatchString(name) || len(name) > 253 {
			v.fail(path+".service_account", "%q: want the name of a service account in default_namespace, or <namespace>/<name>", p.ServiceAccount)
		}
	}
}

var (
	dnsLabelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

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
