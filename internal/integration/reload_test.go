package integration

import (
	"bufio"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kubetunnel/agentk"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/internal/yamlconf"
	"kubetunnel/kas"
	"kubetunnel/tunnel"
)

const (
	stagingToken  = "staging-token-0123456789"
	stagingToken2 = "staging-token2-0123456789"
	carolToken    = "carol-token-0123456789"
)

// agentURL is the proxy URL of any agent.
func (e *env) agentURL(agent string) string {
	return "http://" + e.cfg.Agent.KubernetesAPI.Listen.Address + "/agents/" + agent
}

// get calls the proxy for agent as the holder of token.
func (e *env) get(agent, token string) (int, string) {
	e.t.Helper()
	code, body := tu.Do(e.t, "GET", e.agentURL(agent)+"/api/v1/pods", nil, map[string]string{"Authorization": "Bearer " + token})
	return code, string(unquote(body))
}

// openWatch starts a watch through the proxy and returns a channel that
// receives each event line, closed when the watch ends.
func (e *env) openWatch(agent, token string) <-chan string {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.agentURL(agent)+"/watch/pods?watch=true", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("watch: %v %v", err, resp)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	e.t.Cleanup(func() { resp.Body.Close() })
	return lines
}

// stillStreaming fails unless the watch delivers another event.
func stillStreaming(t *testing.T, watch <-chan string) {
	t.Helper()
	for {
		select {
		case _, ok := <-watch:
			if !ok {
				t.Fatal("the watch ended")
			}
			// Drain what was buffered; the next one must be new.
			select {
			case _, ok := <-watch:
				if !ok {
					t.Fatal("the watch ended")
				}
				return
			case <-time.After(5 * time.Second):
				t.Fatal("the watch stopped streaming")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the watch stopped streaming")
		}
	}
}

// A reload adds an agent and a user and removes another user without
// touching the agents that stay: their session and a watch through it
// go on. Removing an agent closes its session; removing one of its tokens
// closes only the session that used it.
func TestReloadAgentsAndUsers(t *testing.T) {
	e := newEnv(t, "ws")
	e.repo.Commit("config", map[string]string{kas.AgentConfigPath(agentName): goodConfig, kas.AgentConfigPath("staging"): goodConfig})
	e.start()
	prod := e.startAgent(nil)
	e.waitConnected(1)
	tu.Eventually(t, 10*time.Second, "agent config", func() bool { c, _ := prod.Config(); return c != "" })
	// A connection that is replaced shows up under a new remote address.
	prodSession := e.sessionRemotes(agentName, aliceToken)
	watch := e.openWatch(agentName, aliceToken)
	stillStreaming(t, watch)
	if code, body := e.get(agentName, bobToken); code != http.StatusForbidden {
		t.Fatalf("bob before the reload: %d %s, want 403 (no agents)", code, body)
	}

	next := *e.cfg
	next.Agents = append(slices.Clone(e.cfg.Agents), kas.AgentEntry{Name: "staging", ConfigProject: "group/config", TokenSHA256: []string{kas.HashToken(stagingToken), kas.HashToken(stagingToken2)}})
	next.Users = []kas.UserEntry{e.cfg.Users[0], {Name: "carol", TokenSHA256: []string{kas.HashToken(carolToken)}, Agents: []string{agentName, "staging"}}}
	if err := e.kas.Reload(&next); err != nil {
		t.Fatal(err)
	}
	if code, body := e.get(agentName, bobToken); code != http.StatusUnauthorized {
		t.Errorf("bob after his removal: %d %s, want 401", code, body)
	}
	if code, body := e.get(agentName, carolToken); code != http.StatusOK {
		t.Errorf("carol, added: %d %s", code, body)
	}
	staging := func(token string) *runningAgent {
		return e.startAgent(func(o *agentk.Options) { o.Token = token })
	}
	s1 := staging(stagingToken)
	s2 := staging(stagingToken2)
	tu.Eventually(t, 10*time.Second, "staging's two sessions", func() bool { return e.kas.ConnectedSessions("staging") == 2 })
	tu.Eventually(t, 10*time.Second, "staging through the proxy", func() bool { code, _ := e.get("staging", carolToken); return code == 200 })
	if got := e.sessionRemotes(agentName, aliceToken); len(prodSession) != 1 || !slices.Equal(got, prodSession) {
		t.Errorf("prod's session after the reload: %v, want the one from before (%v)", got, prodSession)
	}
	stillStreaming(t, watch)

	// One of staging's tokens removed: the session that used it closes,
	// the other stays; the agentk holding it is refused from then on.
	before := e.sessionRemotes("staging", carolToken)
	next2 := next
	next2.Agents = slices.Clone(next.Agents)
	next2.Agents[1].TokenSHA256 = []string{kas.HashToken(stagingToken2)}
	if err := e.kas.Reload(&next2); err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 10*time.Second, "the removed token's session to close", func() bool { return e.kas.ConnectedSessions("staging") == 1 })
	if got := e.sessionRemotes("staging", carolToken); len(got) != 1 || !slices.Contains(before, got[0]) {
		t.Errorf("staging's sessions: %v, want one of %v: the kept token's connection, not a new one", got, before)
	}
	tu.Eventually(t, 10*time.Second, "the agentk with the removed token to be refused", func() bool {
		return s1.log.Contains("unknown agent token")
	})
	_ = s2 // kept: its connection is the one left

	// staging removed (and from carol's agents): its session closes and
	// callers are refused.
	next3 := next2
	next3.Agents = next2.Agents[:1]
	next3.Users = []kas.UserEntry{next2.Users[0], {Name: "carol", TokenSHA256: []string{kas.HashToken(carolToken)}, Agents: []string{agentName}}}
	if err := e.kas.Reload(&next3); err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 10*time.Second, "staging's session to close", func() bool { return e.kas.ConnectedSessions("staging") == 0 })
	if code, body := e.get("staging", carolToken); code == http.StatusOK {
		t.Errorf("removed agent through the proxy: %d %s", code, body)
	}
	if !e.kasLog.Contains("a config reload removed this agent") {
		t.Errorf("kas log does not say why staging's session closed:\n%s", e.kasLog)
	}
	stillStreaming(t, watch)
	if got := e.sessionRemotes(agentName, aliceToken); !slices.Equal(got, prodSession) {
		t.Errorf("prod's session after three reloads: %v, want the one from before (%v)", got, prodSession)
	}
}

// The config file is watched: a changed file is applied, a bad one keeps
// the running config with the bad key in the log and the metrics, and
// SIGHUP's RequestReload reads the file even when it looks unchanged.
func TestReloadConfigFile(t *testing.T) {
	e := newEnv(t, "ws")
	e.repo.Commit("config", map[string]string{kas.AgentConfigPath(agentName): goodConfig})
	file := filepath.Join(t.TempDir(), "kas.yaml")
	e.writeConfigFile(file, e.cfg)
	e.startWith(func(s *kas.Server) {
		s.ConfigFile = file
		s.ConfigPollPeriod = 50 * time.Millisecond
	})
	a := e.startAgent(nil)
	e.waitConnected(1)
	tu.Eventually(t, 10*time.Second, "agent config", func() bool { c, _ := a.Config(); return c != "" })
	failures := func() float64 { return e.metric("kas_config_reload_total", "result", "failure") }
	successes := func() float64 { return e.metric("kas_config_reload_total", "result", "success") }

	// A new user, by editing the file.
	next := *e.cfg
	next.Users = append(slices.Clone(e.cfg.Users), kas.UserEntry{Name: "carol", TokenSHA256: []string{kas.HashToken(carolToken)}, Agents: []string{agentName}})
	e.writeConfigFile(file, &next)
	tu.Eventually(t, 10*time.Second, "carol to be let in", func() bool { code, _ := e.get(agentName, carolToken); return code == 200 })
	// The counter moves just after the users do.
	tu.Eventually(t, 5*time.Second, "kas_config_reload_total{result=success} to be 1", func() bool { return successes() == 1 })

	// A bad file: the running config stays, and the log names the key.
	before := e.metric("kas_config_last_reload_success_timestamp_seconds")
	bad := strings.Replace(mustYAML(t, &next), kas.HashToken(carolToken), "not-a-hash", 1)
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 10*time.Second, "the reload to fail", func() bool { return failures() == 1 })
	if !e.kasLog.Contains("Config reload failed") || !e.kasLog.Contains("key=users[2].token_sha256[0]") || !e.kasLog.Contains("level=ERROR") {
		t.Errorf("kas log does not say which key is bad:\n%s", e.kasLog)
	}
	if code, body := e.get(agentName, carolToken); code != 200 {
		t.Errorf("carol under the bad file: %d %s, want the running config to stay", code, body)
	}
	if got := e.metric("kas_config_last_reload_successful"); got != 0 {
		t.Errorf("kas_config_last_reload_successful = %v, want 0", got)
	}
	if got := e.metric("kas_config_last_reload_success_timestamp_seconds"); got != before {
		t.Errorf("kas_config_last_reload_success_timestamp_seconds moved on a failure: %v → %v", before, got)
	}
	// The poll reports a bad file once, not every period: two more polls
	// (what each tick of the config poll runs) count nothing.
	for range 2 {
		_ = e.kas.ReloadFile(false)
	}
	if failures() != 1 {
		t.Errorf("a bad file counted %v times, want once", failures())
	}
	// RequestReload (SIGHUP) reads it again.
	e.kas.RequestReload()
	tu.Eventually(t, 10*time.Second, "SIGHUP to reload", func() bool { return failures() == 2 })

	// Fixed: applied. A key that needs a restart is named, not applied.
	fixed := next
	fixed.Users = next.Users[:1] // carol and bob removed
	fixed.Agent.Listen.DrainTimeout = 7 * time.Second
	e.writeConfigFile(file, &fixed)
	tu.Eventually(t, 10*time.Second, "carol to be refused", func() bool { code, _ := e.get(agentName, carolToken); return code == 401 })
	if !e.kasLog.Contains("keys=[agent.listen.drain_timeout]") {
		t.Errorf("kas log does not name the key that needs a restart:\n%s", e.kasLog)
	}
	tu.Eventually(t, 5*time.Second, "kas_config_last_reload_successful to be 1", func() bool {
		return e.metric("kas_config_last_reload_successful") == 1
	})
	if e.kas.ConnectedSessions(agentName) != 1 {
		t.Errorf("the agent's session did not survive the reloads")
	}

	// An empty file (a write in progress, or a mistake) is refused: it
	// would remove every agent and user.
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 10*time.Second, "the empty file to be refused", func() bool { return failures() == 3 })
	if !e.kasLog.Contains("the config file is empty") {
		t.Errorf("kas log does not say the file is empty:\n%s", e.kasLog)
	}
	if code, body := e.get(agentName, aliceToken); code != 200 || e.kas.ConnectedSessions(agentName) != 1 {
		t.Errorf("alice under an empty file: %d %s, want the running config to stay", code, body)
	}
}

// A reload adds a repository and an agent whose config project it is; the
// new agent gets its config, from the new mirror. (kas's own
// TestReloadRepositoriesRegistry checks the registry and the mirrors.)
func TestReloadRepositories(t *testing.T) {
	e := newEnv(t, "ws")
	e.repo.Commit("config", map[string]string{kas.AgentConfigPath(agentName): goodConfig})
	e.start()
	other := tu.NewGitRepo(t)
	commit := other.Commit("config", map[string]string{kas.AgentConfigPath("staging"): goodConfig})
	next := *e.cfg
	next.Repositories = append(slices.Clone(e.cfg.Repositories), repoEntry("group/other", other.URL()))
	next.Agents = append(slices.Clone(e.cfg.Agents), kas.AgentEntry{Name: "staging", ConfigProject: "group/other", TokenSHA256: []string{kas.HashToken(stagingToken)}})
	if err := e.kas.Reload(&next); err != nil {
		t.Fatal(err)
	}
	s := e.startAgent(func(o *agentk.Options) { o.Token = stagingToken })
	tu.Eventually(t, 10*time.Second, "staging's config from the added repository", func() bool { c, _ := s.Config(); return c == commit })

	// prod may now read the new repository: its connection is rotated
	// (agentk reconnects) so that its streams see the new projects.
	e.startAgent(nil)
	e.waitConnected(1)
	old := e.sessionRemotes(agentName, aliceToken)
	withProjects := next
	withProjects.Agents = slices.Clone(next.Agents)
	withProjects.Agents[0].Projects = []string{"group/other"}
	if err := e.kas.Reload(&withProjects); err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 15*time.Second, "prod on a new connection", func() bool {
		got := e.sessionRemotes(agentName, aliceToken)
		return len(old) == 1 && len(got) == 1 && got[0] != old[0]
	})
	if !e.kasLog.Contains(`msg="Rotating agent connection"`) || !e.kasLog.Contains("a config reload changed the agent's config_project or projects") {
		t.Errorf("kas log does not say why prod's connection was rotated:\n%s", e.kasLog)
	}

	// Back: the repository goes, and with it the agent.
	if err := e.kas.Reload(e.cfg); err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 10*time.Second, "staging's session to close", func() bool { return e.kas.ConnectedSessions("staging") == 0 })

	// A reload that Validate refuses changes nothing.
	bad := next
	bad.Agents = []kas.AgentEntry{{Name: "x", ConfigProject: "no/such"}}
	err := e.kas.Reload(&bad)
	var ke *yamlconf.Error
	if !errors.As(err, &ke) || ke.Path != "agents[0].config_project" {
		t.Errorf("Reload of a bad config: %v, want a KeyError at agents[0].config_project", err)
	}
	if code, body := e.get(agentName, aliceToken); code != http.StatusOK {
		t.Errorf("prod after a refused reload: %d %s, want it served", code, body)
	}
}

// A reload applies limits.max_connections_per_agent to new connections
// and limits.max_agent_streams_per_connection to the streams agentk opens
// from then on; the connections already there stay.
func TestReloadConnectionLimit(t *testing.T) {
	e, _ := startWithConfig(t, "")
	e.waitConnected(1)
	rogue := e.dialRogue()
	e.waitConnected(2)
	next := *e.cfg
	next.Limits.MaxConnectionsPerAgent = 2
	next.Limits.MaxAgentStreamsPerConnection = 2
	if err := e.kas.Reload(&next); err != nil {
		t.Fatal(err)
	}
	_, err := e.dialer().Dial(t.Context())
	var refused *tunnel.RefusedError
	if !errors.As(err, &refused) || refused.Status != http.StatusTooManyRequests || !strings.Contains(refused.Reason, "limits.max_connections_per_agent is 2") {
		t.Errorf("third connection after the reload: %v, want 429 naming limits.max_connections_per_agent", err)
	}
	if e.kas.ConnectedSessions(agentName) != 2 {
		t.Error("the agent's connections did not survive the reload")
	}
	streams := openStreams(t, rogue, 10)
	if n := tu.CountOpen(streams, 500*time.Millisecond); n > 2 {
		t.Errorf("kas keeps %d of 10 agent-opened streams after lowering the cap to 2", n)
	}
	if e.kasLog.Contains("take effect only when kas restarts") {
		t.Errorf("the limit was reported as needing a restart:\n%s", e.kasLog)
	}
}

// writeConfigFile writes cfg to path as kas's config file.
func (e *env) writeConfigFile(path string, cfg *kas.Config) {
	e.t.Helper()
	if err := os.WriteFile(path, tu.MarshalYAML(e.t, cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func mustYAML(t *testing.T, cfg *kas.Config) string { return string(tu.MarshalYAML(t, cfg)) }
