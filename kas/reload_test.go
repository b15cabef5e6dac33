package kas

import (
	"errors"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"kubetunnel/gitops/gitrepo"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/internal/yamlconf"
)

// Reload's effects on the registry and the mirrors. Reloads with agentk
// connected (sessions kept, closed, rotated) are tested in
// internal/integration.

const (
	stagingToken = "staging-token-0123456789"
	carolToken   = "carol-token-0123456789"
)

// A reload adds a repository and an agent whose config project it is, and
// gives prod the new repository as a project; reloading the old config
// removes both; a reload that Validate refuses changes nothing.
func TestReloadRepositoriesRegistry(t *testing.T) {
	e := newEnv(t, "ws")
	e.start()
	other := tu.NewGitRepo(t)
	commit := other.Commit("config", map[string]string{AgentConfigPath("staging"): "{}\n"})
	next := *e.cfg
	next.Repositories = append(slices.Clone(e.cfg.Repositories), repoEntry("group/other", other.URL()))
	next.Agents = append(slices.Clone(e.cfg.Agents), AgentEntry{Name: "staging", ConfigProject: "group/other", TokenSHA256: []string{HashToken(stagingToken)}})
	next.Agents[0].Projects = []string{"group/other"}
	if err := e.kas.Reload(&next); err != nil {
		t.Fatal(err)
	}
	if !e.kas.repoSet.Has("group/other") {
		t.Error("the added repository is not mirrored")
	}
	if got, _ := e.kas.registry.Agent(agentName); !got.MayRead("group/other") {
		t.Error("prod may not read its added project")
	}
	if _, ok := e.kas.registry.Agent("staging"); !ok {
		t.Error("the added agent is not in the registry")
	}
	e.waitFetched("group/other", commit)

	// Back: the repository goes, and with it the agent.
	if err := e.kas.Reload(e.cfg); err != nil {
		t.Fatal(err)
	}
	if e.kas.repoSet.Has("group/other") {
		t.Error("removed repository still mirrored")
	}
	if _, ok := e.kas.registry.Agent("staging"); ok {
		t.Error("removed agent still in the registry")
	}

	// A reload that Validate refuses changes nothing.
	bad := next
	bad.Agents = []AgentEntry{{Name: "x", ConfigProject: "no/such"}}
	err := e.kas.Reload(&bad)
	var ke *yamlconf.Error
	if !errors.As(err, &ke) || ke.Path != "agents[0].config_project" {
		t.Errorf("Reload of a bad config: %v, want a KeyError at agents[0].config_project", err)
	}
	if _, ok := e.kas.registry.Agent(agentName); !ok {
		t.Error("a refused reload removed an agent")
	}
}

// restartKeys names what a reload cannot apply.
func TestRestartKeys(t *testing.T) {
	a := &Config{}
	a.Default()
	b := *a
	b.Agent.Listen.Address = "127.0.0.1:1"
	b.Agents = []AgentEntry{{Name: "x"}}
	b.Redis = &RedisSection{Address: "r:1"}
	got := restartKeys(a, &b)
	want := []string{"agent.listen.address", "redis"}
	if !slices.Equal(got, want) {
		t.Errorf("restartKeys = %v, want %v", got, want)
	}
}

// With gitlab:, agents come from GitLab; a reload applies users[] and
// repositories[] and leaves the GitLab agent's connection alone.
func TestReloadGitLab(t *testing.T) {
	e := newGitLabEnv(t, time.Minute, time.Minute)
	e.start()
	a, err := e.dialToken(e.token)
	if err != nil {
		t.Fatal(err)
	}
	firstConfig(t, a)
	key := strconv.FormatInt(e.agent.ID, 10)
	listAs := func(token string) (int, string) {
		code, body := tu.Do(t, "GET", e.obsURL()+"/api/v1/agents", nil, map[string]string{"Authorization": "Bearer " + token})
		return code, string(body)
	}
	if code, _ := listAs(carolToken); code != http.StatusUnauthorized {
		t.Fatalf("carol before the reload: %d, want 401", code)
	}
	extra := tu.NewGitRepo(t)
	extra.Commit("initial", map[string]string{"README.md": "x\n"})
	next := *e.cfg
	next.Users = []UserEntry{{Name: "carol", TokenSHA256: []string{HashToken(carolToken)}, Agents: []string{key}}}
	next.Repositories = []gitrepo.Repository{repoEntry("local/extra", extra.URL())}
	if err := e.kas.Reload(&next); err != nil {
		t.Fatal(err)
	}
	if code, body := listAs(carolToken); code != http.StatusOK || !strings.Contains(body, `"name": "prod"`) {
		t.Errorf("carol's status API after the reload: %d %s, want her agent prod", code, body)
	}
	if !e.kas.repoSet.Has("local/extra") {
		t.Error("the added repository is not mirrored")
	}
	if e.kas.ConnectedSessions(key) != 1 {
		t.Error("the GitLab agent's connection did not survive the reload")
	}
	// agents[] with gitlab: is refused, naming the key.
	bad := next
	bad.Agents = []AgentEntry{{Name: "x"}}
	var ke *yamlconf.Error
	if err := e.kas.Reload(&bad); !errors.As(err, &ke) || !strings.HasPrefix(ke.Path, "agents") {
		t.Errorf("Reload with agents[] under gitlab: %v, want a KeyError at agents", err)
	}
}

// writeConfigFile writes cfg to path as kas's config file.
func (e *env) writeConfigFile(path string, cfg *Config) {
	e.t.Helper()
	if err := os.WriteFile(path, tu.MarshalYAML(e.t, cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func mustYAML(t *testing.T, cfg *Config) string { return string(tu.MarshalYAML(t, cfg)) }
