package check

import (
	"context"
	"strings"
	"testing"

	"kubetunnel/internal/testutil"
	"kubetunnel/kas"
)

// kas check names a manifest glob that selects no file (agentk would
// apply and prune nothing) and the directory it probably meant.
func TestCheckManifestGlobs(t *testing.T) {
	repo := testutil.NewGitRepo(t)
	agentConfig := func(allowEmpty bool) string {
		return `gitops:
  manifest_projects:
  - id: group/repo
    allow_empty: ` + map[bool]string{true: "true", false: "false"}[allowEmpty] + `
    paths:
    - glob: '/manifest/**/*.yaml'
    - glob: '/manifests/app/*.yaml'
`
	}
	repo.Commit("start", map[string]string{
		".gitlab/agents/a1/config.yaml": agentConfig(false),
		"manifests/app/x.yaml":          "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
	})
	cfg, err := kas.ParseConfig([]byte("git:\n  cache_dir: " + t.TempDir() + "\nrepositories:\n- id: group/repo\n  url: file://" + repo.Dir +
		"\nagents:\n- name: a1\n  config_project: group/repo\n  token_sha256: ['" + strings.Repeat("ab", 32) + "']\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if Run(context.Background(), cfg, &out) {
		t.Errorf("check passed with a glob that selects nothing:\n%s", out.String())
	}
	want := `FAIL  agent a1: .gitlab/agents/a1/config.yaml: gitops.manifest_projects[0] (group/repo@default) paths: glob "/manifest/**/*.yaml" selects no file at `
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "(did you mean /manifests?)") || strings.Contains(out.String(), `"/manifests/app/*.yaml"`) {
		t.Errorf("check output lacks %q and the hint, or names the good glob:\n%s", want, out.String())
	}

	repo.Commit("opt in", map[string]string{".gitlab/agents/a1/config.yaml": agentConfig(true)})
	out.Reset()
	if !Run(context.Background(), cfg, &out) {
		t.Errorf("check failed with allow_empty:\n%s", out.String())
	}
}

// kas check fails when an agent's directory is missing but a near name
// exists (a typo), and not when there is none.
func TestCheckAgentDirectoryTypo(t *testing.T) {
	repo := testutil.NewGitRepo(t)
	repo.Commit("start", map[string]string{".gitlab/agents/prodution/config.yaml": "observability: {logging: {level: debug}}\n"})
	cfg, err := kas.ParseConfig([]byte("git:\n  cache_dir: " + t.TempDir() + "\nrepositories:\n- id: group/repo\n  url: file://" + repo.Dir +
		"\nagents:\n- name: production\n  config_project: group/repo\n  token_sha256: ['" + strings.Repeat("ab", 32) + "']\n" +
		"- name: staging\n  config_project: group/repo\n  token_sha256: ['" + strings.Repeat("cd", 32) + "']\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if Run(context.Background(), cfg, &out) {
		t.Errorf("check passed:\n%s", out.String())
	}
	if want := "FAIL  agent production: no .gitlab/agents/production/config.yaml in group/repo, but .gitlab/agents/prodution/ exists"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
	if want := "ok    agent staging: no .gitlab/agents/staging/config.yaml in group/repo, runs with the default config"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}
