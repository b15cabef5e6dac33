package kas

import (
	"errors"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"kubetunnel/internal/yamlconf"
)

// A broken kas config says where (line and key path) and what to write:
// every problem at once, with the keys known at that level.
func TestParseConfigDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantPath string
		want               []string
	}{
		{
			name:     "unknown key in the second agent",
			in:       "agents:\n- name: a\n- name: b\n  projets: [x]\n",
			want:     []string{`line 4: unknown key "projets" in agents[1] (did you mean projects?); known keys: config_project, name, projects, token_sha256`},
			wantPath: "agents[1].projets",
		},
		{
			name:     "unknown key at depth",
			in:       "limits:\n  agent_listen:\n    max_conections: 5\n",
			want:     []string{`line 3: unknown key "max_conections" in limits.agent_listen (did you mean max_connections?); known keys: max_connections, max_connections_per_source`},
			wantPath: "limits.agent_listen.max_conections",
		},
		{
			name: "values of the wrong kind",
			in:   "agent:\n  listen:\n    max_connection_age: 3600\n    websocket: yes\nusers:\n- name: u\n  groups: admin\nredis:\n  database_index: one\n",
			want: []string{
				`line 3: agent.listen.max_connection_age: 3600 has no unit: write 3600s for seconds`,
				`line 4: agent.listen.websocket: must be true or false, got "yes"`,
				`line 7: users[0].groups: must be a list, got "admin"`,
				`line 9: redis.database_index: must be a whole number, got "one"`,
			},
			wantPath: "agent.listen.max_connection_age",
		},
		{
			name: "duplicate key",
			in:   "agents: []\nusers: []\nagents: []\n",
			want: []string{`line 3: duplicate key "agents" in the top level (first at line 1): keep one`},
		},
		{
			name: "second document",
			in:   "agents: []\n---\nusers: []\n",
			want: []string{`line 2: a second YAML document (after ---): a config file holds one document, remove the --- line`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.in))
			if err == nil {
				t.Fatal("ParseConfig accepted it")
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("error:\n got %s\nwant %s", got, want)
			}
			var e *yamlconf.Error
			if !errors.As(err, &e) || e.Path != tc.wantPath {
				t.Errorf("error %#v: want a *yamlconf.Error at %q", err, tc.wantPath)
			}
		})
	}
}

// LoadConfig names the file in front of the line.
func TestLoadConfigNamesFileAndLine(t *testing.T) {
	path := t.TempDir() + "/kas.yaml"
	if err := os.WriteFile(path, []byte("agent:\n  listn: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	want := path + `: line 2: unknown key "listn" in agent (did you mean listen?); known keys: configuration, gitops, info_cache_error_ttl, info_cache_ttl, kubernetes_api, listen`
	if err == nil || err.Error() != want {
		t.Errorf("LoadConfig: %v\nwant %s", err, want)
	}
}

// A config written by yaml.Marshal (sections not set as null, durations as
// strings) reads back as it was: tools and tests generate kas configs.
func TestParseConfigReadsMarshaledConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte("repositories: [{id: a, url: 'file:///r'}]\nagents: [{name: x, config_project: a}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "redis: null") {
		t.Fatalf("the test needs a null section:\n%s", out)
	}
	again, err := ParseConfig(out)
	if err != nil {
		t.Fatalf("ParseConfig of\n%s: %v", out, err)
	}
	if out2, _ := yaml.Marshal(again); string(out2) != string(out) {
		t.Errorf("round trip:\n got %s\nwant %s", out2, out)
	}
}
