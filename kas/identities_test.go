package kas

import (
	"strings"
	"testing"
)

// One token must mean one identity, and users must not take Kubernetes'
// reserved names: such configs are refused, naming the key.
func TestConfigRefusesSharedTokensAndSystemNames(t *testing.T) {
	h := HashToken("shared-token")
	other := HashToken("other-token")
	cases := map[string]struct{ yaml, key string }{
		"two agents":     {"agents:\n- name: a\n  token_sha256: [" + h + "]\n- name: b\n  token_sha256: [" + h + "]\n", "agents[1].token_sha256[0]: the same token hash as agents[0].token_sha256[0]"},
		"agent and user": {"agents:\n- name: a\n  token_sha256: [" + h + "]\nusers:\n- name: u\n  token_sha256: [" + other + ", " + h + "]\n", "users[0].token_sha256[1]: the same token hash as agents[0].token_sha256[0]"},
		"two users":      {"users:\n- name: u\n  token_sha256: [" + h + "]\n- name: v\n  token_sha256: [" + h + "]\n", "users[1].token_sha256[0]"},
		"system user":    {"users:\n- name: system:admin\n  token_sha256: [" + h + "]\n", `users[0].name: "system:admin": names starting with system: are reserved`},
	}
	for name, c := range cases {
		_, err := ParseConfig([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.key)
		}
	}
	if _, err := ParseConfig([]byte("agents:\n- name: a\n  token_sha256: [" + h + "]\nusers:\n- name: u\n  token_sha256: [" + other + "]\n")); err != nil {
		t.Errorf("distinct tokens: %v", err)
	}
}
