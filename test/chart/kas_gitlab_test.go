package chart_test

import (
	"fmt"
	"strings"
	"testing"
)

// With config.gitlab, the chart mounts GitLab's shared secret, the git
// credential and the CA, points the config at them, and serves the api
// listener on a container and Service port.
func TestKasGitLab(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "kas", "kas", ns, `
gitlab:
  secretName: gitlab-kas-secret
  gitPasswordSecretName: gitlab-deploy-token
  caSecretName: gitlab-ca
config:
  gitlab:
    address: https://gitlab.example.com
    external_url: https://gitlab.example.com
    git: {username: gitlab+deploy-token-12}
  users:
  - name: alice
    token_sha256: ["60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"]
    agents: ["7"]
`)
	dryRunApply(t, r)
	cfg := kasConfig(t, r)
	checkKasDeployment(t, r, cfg)
	g := cfg.GitLab
	if g.Address != "https://gitlab.example.com" || g.AuthenticationSecretFile != "/etc/kas/gitlab/secret" ||
		g.Git.Username != "gitlab+deploy-token-12" || g.Git.PasswordFile != "/etc/kas/gitlab-git/password" || g.CACertificateFile != "/etc/kas/gitlab-ca/ca.crt" {
		t.Errorf("gitlab %+v", g)
	}
	if cfg.API == nil || cfg.API.Listen.Address != ":8153" || cfg.API.Listen.AuthenticationSecretFile != g.AuthenticationSecretFile {
		t.Fatalf("api %+v", cfg.API)
	}
	d := r.one(t, "Deployment")
	c := container(d)
	for _, f := range []string{g.AuthenticationSecretFile, g.Git.PasswordFile, g.CACertificateFile} {
		if !mountsCover(c, f) {
			t.Errorf("the config names %s, which is on no volume mount", f)
		}
	}
	vols := fmt.Sprint(get(d, "spec", "template", "spec", "volumes"))
	for _, want := range []string{"secretName:gitlab-kas-secret", "secretName:gitlab-deploy-token", "secretName:gitlab-ca"} {
		if !strings.Contains(vols, want) {
			t.Errorf("volumes %s lack %s", vols, want)
		}
	}
	var port string
	for _, p := range list(c, "ports") {
		if str(p, "name") == "api" {
			port = fmt.Sprint(get(p, "containerPort"))
		}
	}
	if ":"+port != cfg.API.Listen.Address {
		t.Errorf("container port api %q, kas listens on %q", port, cfg.API.Listen.Address)
	}
	found := false
	svc, _ := kasServices(t, r) // the api port is on the agent Service, observability has its own
	for _, p := range list(svc, "spec", "ports") {
		found = found || (str(p, "name") == "api" && str(p, "targetPort") == "api")
	}
	if !found {
		t.Error("no Service port for the api listener")
	}

	for _, c := range []struct{ name, values, want string }{
		{"no secret", "config: {gitlab: {address: 'https://g'}}", "gitlab.secretName"},
		{"api without gitlab", "config: {api: {listen: {address: ':1'}}}", "needs config.gitlab"},
	} {
		if _, err := renderChart("kas", "kas", "default", c.values); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: render error %v, want %q", c.name, err, c.want)
		}
	}
}
