package agentcfg

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// A config.yaml written for GitLab 16.x's agent, with every section of its
// schema, is accepted: what this agent implements applies, the rest is
// named in one warning.
func TestParseGitLab16Config(t *testing.T) {
	data, err := os.ReadFile("testdata/gitlab-16.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data, configProject)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	wantIgnored := []string{
		"gitops.charts",
		"observability.logging.grpc_level",
		"observability.google_profiler",
		"container_scanning",
		"remote_development",
		"flux",
	}
	if !slices.Equal(cfg.Ignored, wantIgnored) {
		t.Errorf("Ignored = %q, want %q", cfg.Ignored, wantIgnored)
	}
	warning := cfg.IgnoredWarning()
	if !strings.Contains(warning, strings.Join(wantIgnored, ", ")) {
		t.Errorf("warning %q does not name the ignored keys", warning)
	}

	// What is implemented applies.
	if n := len(cfg.GitOps.ManifestProjects); n != 3 {
		t.Fatalf("%d manifest projects, want 3", n)
	}
	p := cfg.GitOps.ManifestProjects[0]
	if p.ID != "gitlab-org/cluster-integration/gitlab-agent" || p.DefaultNamespace != "my-ns" || p.Ref.Branch != "production" ||
		len(p.Paths) != 3 || p.Paths[1].Glob != "/team2/apps/**/*.yaml" || !*p.Prune || p.InventoryPolicy != InventoryMustMatch {
		t.Errorf("manifest project 0 = %+v", p)
	}
	if cfg.GitOps.ManifestProjects[1].Ref.Tag != "v1.0.0" || cfg.GitOps.ManifestProjects[2].Ref.Commit == "" {
		t.Errorf("refs: %+v", cfg.GitOps.ManifestProjects)
	}
	if cfg.UserAccess.AccessAs.Agent == nil || len(cfg.UserAccess.Groups) != 2 || cfg.UserAccess.Groups[1].ID != "group-3/subgroup" {
		t.Errorf("user_access = %+v", cfg.UserAccess)
	}
	if cfg.Observability.Logging.Level != LogDebug {
		t.Errorf("logging level %q", cfg.Observability.Logging.Level)
	}

	// ci_access is typed in full, for the agent to enforce later.
	ci := cfg.CIAccess
	if len(ci.Projects) != 2 || len(ci.Groups) != 2 {
		t.Fatalf("ci_access = %+v", ci)
	}
	if p := ci.Projects[0]; p.ID != "path/to/project" || p.DefaultNamespace != "ci" ||
		!slices.Equal(p.Environments, []string{"staging", "review/*"}) || p.AccessAs == nil || p.AccessAs.CIJob == nil {
		t.Errorf("ci_access.projects[0] = %+v", p)
	}
	im := ci.Projects[1].AccessAs.Impersonate
	if im == nil || im.Username != "john-smith" || im.UID != "1234" || !slices.Equal(im.Groups, []string{"app-team", "another-team"}) ||
		len(im.Extra) != 1 || im.Extra[0].Key != "department" || !slices.Equal(im.Extra[0].Val, []string{"engineering"}) {
		t.Errorf("impersonate = %+v", im)
	}
	if ci.Groups[0].AccessAs.Agent == nil || ci.Groups[1].AccessAs.CIUser == nil {
		t.Errorf("ci_access.groups = %+v", ci.Groups)
	}
	if rd := cfg.RemoteDevelopment; rd.DNSZone != "workspaces.example.dev" || *rd.WorkspacesQuota != 10 || rd.Labels["app"] != "workspace" {
		t.Errorf("remote_development = %+v", rd)
	}

	// agentk learns the ignored keys (to log them) and gets ci_access,
	// not the sections nothing on its side reads.
	b, err := cfg.ToJSON()
	if err != nil {
		t.Fatal(err)
	}
	var wire map[string]json.RawMessage
	if err := json.Unmarshal(b, &wire); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"gitops", "user_access", "observability", "ci_access", "ignored_keys"} {
		if _, ok := wire[k]; !ok {
			t.Errorf("wire JSON lacks %s: %s", k, b)
		}
	}
	for _, k := range []string{"remote_development", "container_scanning", "flux"} {
		if _, ok := wire[k]; ok {
			t.Errorf("wire JSON carries %s", k)
		}
	}
	got, err := FromJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Ignored, wantIgnored) || !reflect.DeepEqual(got.CIAccess, cfg.CIAccess) {
		t.Errorf("after the wire: ignored %q, ci_access %+v", got.Ignored, got.CIAccess)
	}
}

// Sections of older GitLab releases, that existing files may still carry.
func TestParseLegacySections(t *testing.T) {
	cfg, err := Parse([]byte(`starboard:
  cadence: '@daily'
  vulnerability_report:
    namespaces: [default]
cilium:
  hubble_relay_address: hubble-relay.kube-system.svc:80
`), configProject)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Ignored, []string{"starboard", "cilium"}) {
		t.Errorf("Ignored = %q", cfg.Ignored)
	}
}

func TestParseNothingIgnored(t *testing.T) {
	cfg, err := Parse([]byte("gitops:\n  manifest_projects: []\nci_access:\nobservability:\n  logging: {level: info}\n"), configProject)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ignored != nil || cfg.IgnoredWarning() != "" {
		t.Errorf("an empty ci_access is reported: %q", cfg.Ignored)
	}
}

// Keys that are not in GitLab's schema either stay errors, inside the
// sections this agent ignores too.
func TestParseUpstreamSectionErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{
			name: "misspelt key in container_scanning",
			in:   "container_scanning:\n  cadense: '@daily'\n",
			want: `config.yaml: line 2: unknown key "cadense" in container_scanning (did you mean cadence?); known keys: cadence, resource_requirements, vulnerability_report`,
		},
		{
			name: "quota is not a number",
			in:   "remote_development:\n  workspaces_quota: many\n",
			want: `config.yaml: line 2: remote_development.workspaces_quota: must be a whole number, got "many"`,
		},
		{
			name: "labels are not a mapping",
			in:   "remote_development:\n  labels: [a]\n",
			want: `config.yaml: line 2: remote_development.labels: must be a mapping of keys to values, got a list`,
		},
		{
			name: "ci_access entry without id",
			in:   "ci_access:\n  projects:\n  - default_namespace: x\n",
			want: `config.yaml: line 3: ci_access.projects[0].id: required: the full path of a project or group, such as group/project`,
		},
		{
			name: "two ci_access identities",
			in:   "ci_access:\n  groups:\n  - id: g\n    access_as: {agent: {}, ci_job: {}}\n",
			want: `config.yaml: line 4: ci_access.groups[0].access_as: set only one of agent, impersonate, ci_job, ci_user (found agent, ci_job)`,
		},
		{
			name: "empty ci_access identity",
			in:   "ci_access:\n  groups:\n  - id: g\n    access_as: {}\n",
			want: `config.yaml: line 4: ci_access.groups[0].access_as: set one of agent: {}, impersonate: {…}, ci_job: {}, ci_user: {}`,
		},
		{
			name: "impersonate without username",
			in:   "ci_access:\n  projects:\n  - id: p\n    access_as:\n      impersonate:\n        groups: [a]\n",
			want: `config.yaml: line 5: ci_access.projects[0].access_as.impersonate.username: required: the user to impersonate`,
		},
		{
			name: "user access as impersonate is CI only",
			in:   "user_access:\n  access_as: {impersonate: {username: x}}\n",
			want: `config.yaml: line 2: unknown key "impersonate" in user_access.access_as; known keys: agent, user`,
		},
		{
			name: "grpc level",
			in:   "observability:\n  logging:\n    grpc_level: trace\n",
			want: `config.yaml: line 3: observability.logging.grpc_level: "trace" is not one of debug, info, warn, error`,
		},
		{
			name: "not in any schema",
			in:   "agent_access: {}\n",
			want: `config.yaml: line 1: unknown key "agent_access" in the top level; known keys: ci_access, cilium, container_scanning, flux, gitops, observability, remote_development, starboard, user_access`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.in), configProject)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", cfg)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %s\nwant %s", err, tc.want)
			}
		})
	}
}
