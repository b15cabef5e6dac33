package check

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubetunnel/internal/testutil/fakegitlab"
	"kubetunnel/kas"
)

// TestCheckGitLab: kas check with gitlab: says, one line per item, whether
// the secret loads, GitLab answers and accepts kas's JWT, the git
// credential is readable and the api listener's secret loads; and it
// fails naming the item for each way of getting them wrong.
func TestCheckGitLab(t *testing.T) {
	gl := fakegitlab.New(t)
	cfg := &kas.Config{
		Agent:         kas.AgentSection{Listen: kas.AgentListen{Address: "127.0.0.1:0"}},
		Observability: kas.ObservabilitySection{Listen: kas.Listen{Address: "127.0.0.1:0"}},
		Git:           kas.GitSection{CacheDir: filepath.Join(t.TempDir(), "cache")},
		GitLab: &kas.GitLabSection{
			Address:                  gl.URL,
			AuthenticationSecretFile: gl.SecretFile,
			CACertificateFile:        gl.CAFile,
			Git:                      kas.GitLabGit{Username: gl.GitUsername, PasswordFile: gl.GitPasswordFile},
		},
	}
	cfg.Agent.KubernetesAPI.Listen.Address = "127.0.0.1:0"
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := *cfg
	base.API = &kas.APISection{Listen: kas.APIListen{Address: "127.0.0.1:0", AuthenticationSecretFile: gl.SecretFile}}
	check := func(mutate func(c *kas.Config, g *kas.GitLabSection)) (bool, string) {
		t.Helper()
		c := base
		g := *base.GitLab
		api := *base.API
		c.GitLab, c.API = &g, &api
		if mutate != nil {
			mutate(&c, &g)
		}
		var out bytes.Buffer
		ok := Run(context.Background(), &c, &out)
		return ok, out.String()
	}

	ok, out := check(nil)
	for _, want := range []string{
		"ok    gitlab.authentication_secret_file " + gl.SecretFile + ": 32 bytes",
		"ok    gitlab " + gl.URL + ": reachable, accepts kas's JWT",
		"ok    gitlab.git.password_file " + gl.GitPasswordFile,
		"ok    api.listen.authentication_secret_file " + gl.SecretFile + ": 32 bytes\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("good config: no %q in:\n%s", want, out)
		}
	}
	if !ok || strings.Contains(out, "FAIL") || strings.Contains(out, "WARN  gitlab.address") {
		t.Fatalf("good config: ok=%v\n%s", ok, out)
	}

	other := write("other-secret", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n")
	short := write("short-secret", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16)))
	for _, c := range []struct {
		name   string
		mutate func(*kas.Config, *kas.GitLabSection)
		want   string
	}{
		{"another secret", func(_ *kas.Config, g *kas.GitLabSection) { g.AuthenticationSecretFile = other },
			"FAIL  gitlab " + gl.URL + ": GitLab refuses kas's JWT (401)"},
		{"a short secret", func(_ *kas.Config, g *kas.GitLabSection) { g.AuthenticationSecretFile = short },
			"FAIL  gitlab.authentication_secret_file " + short + ": " + short + ": decodes to 16 bytes, want at least 32"},
		{"a missing git credential", func(_ *kas.Config, g *kas.GitLabSection) { g.Git.PasswordFile = filepath.Join(dir, "none") },
			"FAIL  gitlab.git.password_file " + filepath.Join(dir, "none") + ": open "},
		{"an empty git credential", func(_ *kas.Config, g *kas.GitLabSection) { g.Git.PasswordFile = write("empty", "\n") },
			"is empty"},
		{"a short api secret", func(c *kas.Config, _ *kas.GitLabSection) { c.API.Listen.AuthenticationSecretFile = short },
			"FAIL  api.listen.authentication_secret_file " + short},
		{"GitLab unreachable", func(_ *kas.Config, g *kas.GitLabSection) { g.Address = "http://127.0.0.1:1"; g.Git = kas.GitLabGit{} },
			"FAIL  gitlab http://127.0.0.1:1: GitLab is unreachable"},
	} {
		ok, out := check(c.mutate)
		if ok || !strings.Contains(out, c.want) {
			t.Errorf("%s: ok=%v, want a line with %q:\n%s", c.name, ok, c.want, out)
		}
	}
	_, out = check(func(_ *kas.Config, g *kas.GitLabSection) { g.Address = "http://127.0.0.1:1"; g.Git = kas.GitLabGit{} })
	if !strings.Contains(out, `WARN  gitlab.address "http://127.0.0.1:1" is plain http://`) {
		t.Errorf("no warning for http://:\n%s", out)
	}
	_, out = check(func(c *kas.Config, _ *kas.GitLabSection) { c.API.Listen.AuthenticationSecretFile = other })
	if !strings.Contains(out, "not the same key as gitlab.authentication_secret_file") {
		t.Errorf("no note for two different secrets:\n%s", out)
	}
	gl.SetDown(true)
	if ok, out := check(nil); ok || !strings.Contains(out, "FAIL  gitlab "+gl.URL+": GitLab is unreachable") {
		t.Errorf("GitLab down: ok=%v\n%s", ok, out)
	}
	gl.SetDown(false)
}
