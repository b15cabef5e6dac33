package kas

import (
	"strings"
	"testing"

	"kubetunnel/gitops/manifests"
)

func TestGitOpsConfigKeys(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
agent:
  gitops:
    poll_period: 5s
    max_manifest_file_size: 1048576
    max_total_manifest_file_size: 10485760
    max_number_of_files: 50
    max_number_of_paths: 10
git:
  webhook_secret_file: /etc/kas/webhook-secret
`))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Agent.GitOps
	if g.MaxManifestFileSize != 1<<20 || g.MaxTotalManifestFileSize != 10<<20 || g.MaxNumberOfFiles != 50 || g.MaxNumberOfPaths != 10 ||
		cfg.Git.WebhookSecretFile != "/etc/kas/webhook-secret" {
		t.Errorf("parsed: %+v %+v", g, cfg.Git)
	}

	cfg, err = ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	g = cfg.Agent.GitOps
	if g.MaxManifestFileSize != manifests.DefaultMaxFileSize || g.MaxTotalManifestFileSize != manifests.DefaultMaxTotalSize ||
		g.MaxNumberOfFiles != manifests.DefaultMaxFiles || g.MaxNumberOfPaths != manifests.DefaultMaxPaths || cfg.Git.WebhookSecretFile != "" {
		t.Errorf("defaults: %+v %+v", g, cfg.Git)
	}

	for doc, key := range map[string]string{
		"agent: {gitops: {max_manifest_file_size: -1}}":       "agent.gitops.max_manifest_file_size: must be positive",
		"agent: {gitops: {max_manifest_file_size: 40000000}}": "agent.gitops.max_manifest_file_size: 40000000 is over",
		"agent: {gitops: {max_total_manifest_file_size: -1}}": "agent.gitops.max_total_manifest_file_size",
		"agent: {gitops: {max_number_of_files: -5}}":          "agent.gitops.max_number_of_files",
		"agent: {gitops: {max_number_of_paths: -1}}":          "agent.gitops.max_number_of_paths",
		"agent: {gitops: {max_number_of_pathz: 1}}":           `unknown key "max_number_of_pathz"`,
		"git: {webhook_secret: x}":                            `unknown key "webhook_secret"`,
	} {
		if _, err := ParseConfig([]byte(doc)); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v, want an error with %q", doc, err, key)
		}
	}
}
