package agentcfg

import (
	"strings"
	"testing"
)

func TestProjectSafetyKeys(t *testing.T) {
	cfg, err := Parse([]byte(`gitops:
  manifest_projects:
  - id: group/app
    default_namespace: one
    allow_empty: true
    pre_check: false
  - id: group/app
    default_namespace: two
    name: app-two
`), "group/config")
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.GitOps.ManifestProjects[0], cfg.GitOps.ManifestProjects[1]
	if a.DisplayName() != "group/app@one" || !a.AllowEmpty || a.PreCheckEnabled() {
		t.Errorf("first project: %q allow_empty=%v pre_check=%v", a.DisplayName(), a.AllowEmpty, a.PreCheckEnabled())
	}
	if b.DisplayName() != "app-two" || b.AllowEmpty || !b.PreCheckEnabled() {
		t.Errorf("second project: %q allow_empty=%v pre_check=%v", b.DisplayName(), b.AllowEmpty, b.PreCheckEnabled())
	}

	for _, c := range []struct{ in, want string }{
		{"gitops:\n  manifest_projects:\n  - {id: a, default_namespace: x, name: same}\n  - {id: b, name: same}\n",
			`gitops.manifest_projects[1].name: "same" is also the name of gitops.manifest_projects[0]`},
		{"gitops:\n  manifest_projects:\n  - {id: a, name: 'bad name!'}\n",
			`gitops.manifest_projects[0].name: "bad name!": use 1-100 letters`},
		{"gitops:\n  manifest_projects:\n  - {id: a, default_namespace: x}\n  - {id: b, name: a@x}\n",
			`gitops.manifest_projects[1].name: "a@x" is also the name of gitops.manifest_projects[0]`},
	} {
		_, err := Parse([]byte(c.in), "group/config")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
}

func TestServiceAccountKey(t *testing.T) {
	cfg, err := Parse([]byte("gitops:\n  manifest_projects:\n  - {id: a, default_namespace: apps, service_account: deployer}\n  - {id: b, service_account: ops/deployer}\n"), "group/config")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.GitOps.ManifestProjects[0].ServiceAccountRef(); got != "apps/deployer" {
		t.Errorf("ServiceAccountRef = %q, want apps/deployer", got)
	}
	if got := cfg.GitOps.ManifestProjects[1].ServiceAccountRef(); got != "ops/deployer" {
		t.Errorf("ServiceAccountRef = %q, want ops/deployer", got)
	}
	for _, bad := range []string{"Deployer", "a/b/c", "/x", "ns/", "a_b"} {
		_, err := Parse([]byte("gitops:\n  manifest_projects:\n  - {id: a, service_account: '"+bad+"'}\n"), "group/config")
		if err == nil || !strings.Contains(err.Error(), "gitops.manifest_projects[0].service_account") {
			t.Errorf("service_account %q: err = %v", bad, err)
		}
	}
}
