package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubetunnel/internal/testutil"
	"kubetunnel/kas"
)

func runKas(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// kas check gives a verdict per item: good config and repository pass;
// an unreachable repository and a broken agent config fail with the
// reason, and the exit status says so.
func TestCheck(t *testing.T) {
	repo := testutil.NewGitRepo(t)
	repo.Commit("config", map[string]string{
		kas.AgentConfigPath("prod"): "gitops:\n  manifest_projects:\n  - id: ops/config\n    paths: [{glob: '/manifests/*.yaml'}]\n",
		"manifests/cm.yaml":         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
	})
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "kas.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := fmt.Sprintf(`git:
  cache_dir: %s
repositories:
  - id: ops/config
    url: %s
agents:
  - name: prod
    config_project: ops/config
    token_sha256: [%q]
`, filepath.Join(dir, "cache"), repo.URL(), kas.HashToken("t"))

	code, out, _ := runKas(t, "check", "--config", write(base))
	if code != 0 || !strings.Contains(out, "ok    repository ops/config") || !strings.Contains(out, "ok    agent prod: .gitlab/agents/prod/config.yaml at ") {
		t.Fatalf("good config: exit %d\n%s", code, out)
	}

	repo.Commit("break it", map[string]string{kas.AgentConfigPath("prod"): "gitops:\n  manifest_projectz: []\n"})
	code, out, _ = runKas(t, "check", "--config", write(base+"  - name: lost\n    token_sha256: []\n"))
	if code != 1 || !strings.Contains(out, `FAIL  agent prod: .gitlab/agents/prod/config.yaml: line 2: unknown key "manifest_projectz" in gitops (did you mean manifest_projects?)`) ||
		!strings.Contains(out, "FAIL  agent lost: no token_sha256") {
		t.Fatalf("broken agent config: exit %d\n%s", code, out)
	}

	code, out, _ = runKas(t, "check", "--config", write(strings.Replace(base, repo.URL(), "file:///nonexistent/repo", 1)))
	if code != 1 || !strings.Contains(out, "FAIL  repository ops/config (file:///nonexistent/repo)") {
		t.Fatalf("unreachable repository: exit %d\n%s", code, out)
	}

	code, out, _ = runKas(t, "check", "--config", write("agent:\n  listn: {}\n"))
	if code != 1 || !strings.Contains(out, `line 2: unknown key "listn" in agent (did you mean listen?); known keys: `) {
		t.Fatalf("invalid config: exit %d\n%s", code, out)
	}
}

func TestHelpAndVersion(t *testing.T) {
	if code, out, _ := runKas(t, "--version"); code != 0 || !strings.HasPrefix(out, "kas ") {
		t.Errorf("--version: %d %q", code, out)
	}
	code, _, errOut := runKas(t, "--help")
	if code != 0 || !strings.Contains(errOut, "kas check --config FILE") || !strings.Contains(errOut, "-config") {
		t.Errorf("--help: %d\n%s", code, errOut)
	}
	if code, _, errOut := runKas(t); code != 2 || !strings.Contains(errOut, "--config is required") {
		t.Errorf("no args: %d %s", code, errOut)
	}
}

// --configuration-file is GitLab's kas's name for --config: existing
// manifests that start kas with it keep working.
func TestConfigurationFileAlias(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kas.yaml")
	for _, args := range [][]string{
		{"--configuration-file", missing},
		{"--configuration-file=" + missing},
		{"check", "--configuration-file", missing},
	} {
		code, out, errOut := runKas(t, args...)
		if all := out + errOut; code == 0 || strings.Contains(all, "is required") || !strings.Contains(all, missing) {
			t.Errorf("kas %s: exit %d, output %q: want the named file read (and not found)", strings.Join(args, " "), code, all)
		}
	}
}
