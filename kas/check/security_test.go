package check

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubetunnel/kas"
)

// kas check warns about weak settings without failing.
func TestCheckSecurityWarnings(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "webhook")
	if err := os.WriteFile(secret, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := kas.ParseConfig([]byte(`
agent:
  listen: {address: 0.0.0.0:8150}
  kubernetes_api:
    listen: {address: 0.0.0.0:8154}
observability:
  listen: {address: ":8151"}
git:
  cache_dir: ` + filepath.Join(dir, "cache") + `
  webhook_secret_file: ` + secret + `
users:
- name: root
  token_sha256: [` + kas.HashToken("t") + `]
  groups: [system:masters]
`))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if !Run(context.Background(), cfg, &out) {
		t.Fatalf("warnings failed the check:\n%s", out.String())
	}
	for _, want := range []string{
		"WARN  agent.listen 0.0.0.0:8150: plain text off loopback",
		"WARN  agent.kubernetes_api.listen 0.0.0.0:8154: plain text off loopback",
		"WARN  observability.listen :8151: off loopback",
		"WARN  git.webhook_secret_file: 1 bytes",
		`WARN  users[0].groups: "system:masters" is a Kubernetes system group`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	// Connection caps above the open-files limit.
	big := *cfg
	big.Limits.AgentListen.MaxConnections = int(openFilesLimit()) + 1
	if w := strings.Join(securityWarnings(&big), "\n"); !strings.Contains(w, "not below this process's open-files limit") {
		t.Errorf("caps over the open-files limit: no warning in\n%s", w)
	}
	// The defaults (loopback) warn about nothing.
	cfg, _ = kas.ParseConfig([]byte("git:\n  cache_dir: " + filepath.Join(dir, "cache2") + "\n"))
	for _, w := range securityWarnings(cfg) {
		// (The open-files warning depends on this machine's limit.)
		if !strings.Contains(w, "open-files limit") {
			t.Errorf("defaults: %q", w)
		}
	}
}

// Several replicas: kas check warns about Redis and the private API
// without TLS or authentication.
func TestCheckReplicaSecurityWarnings(t *testing.T) {
	cfg, err := kas.ParseConfig([]byte("redis:\n  address: 127.0.0.1:6379\nprivate_api:\n  listen:\n    address: 127.0.0.1:8155\n  authentication_secret_file: /x\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(securityWarnings(cfg), "\n")
	for _, want := range []string{"redis.tls.enabled is false", "redis.password_file is not set", "private_api.listen 127.0.0.1:8155: plain text between replicas"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
}
