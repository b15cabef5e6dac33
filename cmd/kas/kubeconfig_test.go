package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"kubetunnel/internal/testpki"
	"kubetunnel/kas"
)

// kas kubeconfig writes an https:// URL with the listener's host, and
// refuses (exit 1, saying what to pass) where the kubeconfig could not
// work: a plain-HTTP listener (kubectl sends no token over HTTP and then
// only says "provide credentials") and a listener on every interface
// (kas cannot know the name callers use).
func TestKubeconfigTraps(t *testing.T) {
	dir := t.TempDir()
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, key, _, err := ca.Issue(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	config := func(listen string) string {
		p := filepath.Join(t.TempDir(), "kas.yaml")
		body := fmt.Sprintf(`agent:
  kubernetes_api: {listen: {%s}}
agents:
  - name: prod
    token_sha256: [%q]
users:
  - name: alice
    token_sha256: [%q]
    agents: [prod]
`, listen, kas.HashToken("a"), kas.HashToken("u"))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tls := fmt.Sprintf("certificate_file: %s, key_file: %s", cert, key)
	for _, c := range []struct {
		name, listen string
		extra        []string
		code         int
		want         []string
	}{
		{"tls loopback", `address: "127.0.0.1:8154", ` + tls, nil, 0, []string{"server: https://127.0.0.1:8154/agents/prod", "certificate-authority-data:"}},
		{"plain listener", `address: "127.0.0.1:8154"`, nil, 1, []string{"kubectl does not send a token over plain HTTP", "--server https://HOST:8154"}},
		{"every interface", `address: "0.0.0.0:8154", ` + tls, nil, 1, []string{`"0.0.0.0:8154" listens on every interface`, "pass --server https://HOST:8154"}},
		{"every interface v6", `address: "[::]:8154", ` + tls, nil, 1, []string{"listens on every interface"}},
		{"every interface, --server", `address: "0.0.0.0:8154", ` + tls, []string{"--server", "https://kas.example.com:8154"}, 0, []string{"server: https://kas.example.com:8154/agents/prod"}},
		{"--server http", `address: "0.0.0.0:8154"`, []string{"--server", "http://kas.example.com:8154"}, 1, []string{`--server "http://kas.example.com:8154" is plain HTTP`}},
		{"--server with path", `address: "0.0.0.0:8154"`, []string{"--server", "https://kas.example.com/agents/prod"}, 1, []string{"without a path"}},
	} {
		args := append([]string{"kubeconfig", "--config", config(c.listen), "--agent", "prod", "--user", "alice"}, c.extra...)
		code, out, errOut := runKas(t, args...)
		all := out + errOut
		if code != c.code {
			t.Errorf("%s: exit %d, want %d\n%s", c.name, code, c.code, all)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(all, w) {
				t.Errorf("%s: output lacks %q:\n%s", c.name, w, all)
			}
		}
		if c.code != 0 && out != "" {
			t.Errorf("%s: refused, yet wrote to stdout: %q", c.name, out)
		}
	}
}

// kas token create --user prints the users[] entry; --output writes the
// token to a new 0600 file and not to stdout, and never overwrites one.
func TestTokenCreateUserOutput(t *testing.T) {
	code, out, _ := runKas(t, "token", "create", "--user", "alice")
	m := regexp.MustCompile(`(?s)Token for alice \(shown once.*\):\n(\S+)\n\nAdd to the kas config:\nusers:\n  - name: alice\n    token_sha256: \["([0-9a-f]{64})"\]\n    agents: \[\]`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("--user: exit %d\n%s", code, out)
	}
	if kas.HashToken(m[1]) != m[2] {
		t.Errorf("--user: printed hash is not the token's")
	}

	file := filepath.Join(t.TempDir(), "alice.token")
	code, out, _ = runKas(t, "token", "create", "--agent", "prod", "--output", file)
	if code != 0 || !strings.Contains(out, "written to "+file) || !strings.Contains(out, "agents:\n  - name: prod\n") {
		t.Fatalf("--output: exit %d\n%s", code, out)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("--output file: %v %v, want mode 0600", st, err)
	}
	b, _ := os.ReadFile(file)
	token := strings.TrimSpace(string(b))
	if token == "" || strings.Contains(out, token) || !strings.Contains(out, kas.HashToken(token)) {
		t.Errorf("--output: token %q printed, or its hash missing:\n%s", token, out)
	}
	if code, _, errOut := runKas(t, "token", "create", "--agent", "prod", "--output", file); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("--output to an existing file: exit %d %q", code, errOut)
	}
	if b2, _ := os.ReadFile(file); string(b2) != string(b) {
		t.Errorf("--output overwrote the existing token")
	}
	if code, _, errOut := runKas(t, "token", "create", "--agent", "a", "--user", "b"); code != 2 || !strings.Contains(errOut, "one of them") {
		t.Errorf("--agent and --user: exit %d %q", code, errOut)
	}
}
