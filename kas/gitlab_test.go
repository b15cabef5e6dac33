package kas

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	trackerrpc "kubetunnel/api/gitlab/agenttracker/rpc"
	"kubetunnel/api/gitlab/notifications"
	"kubetunnel/api/rpc"
	"kubetunnel/internal/gitlab"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/fakegitlab"
	kasstatus "kubetunnel/kas/status"
	"kubetunnel/tunnel"
	"kubetunnel/version"
)

// glEnv is kas with gitlab: pointing at a fake GitLab holding an agent
// "prod" in group/agents, which may read group/apps but not other/secret.
type glEnv struct {
	*env
	gl      *fakegitlab.Server
	agent   *fakegitlab.Agent
	token   string
	cfgProj *fakegitlab.Project
	apps    *fakegitlab.Project
}

const glAgentConfig = `gitops:
  manifest_projects:
  - id: group/apps
  - id: other/secret
`

func newGitLabEnv(t *testing.T, ttl, errTTL time.Duration) *glEnv {
	t.Helper()
	gl := fakegitlab.New(t)
	cfgProj := gl.AddProject("group/agents", map[string]string{".gitlab/agents/prod/config.yaml": glAgentConfig})
	apps := gl.AddProject("group/apps", map[string]string{"app.yaml": "kind: ConfigMap\n"})
	gl.AddProject("other/secret", map[string]string{"secret.yaml": "kind: Secret\n"})
	a := gl.AddAgent("prod", cfgProj)
	gl.Allow(a, apps)
	ws := true
	cfg := &Config{
		Agent: AgentSection{
			Listen:            AgentListen{Address: "127.0.0.1:0", Websocket: &ws, DrainTimeout: 5 * time.Second},
			Configuration:     PollSection{PollPeriod: 100 * time.Millisecond},
			GitOps:            GitOpsSection{PollPeriod: 100 * time.Millisecond},
			InfoCacheTTL:      ttl,
			InfoCacheErrorTTL: errTTL,
		},
		Observability: ObservabilitySection{Listen: Listen{Address: "127.0.0.1:0"}},
		Git:           GitSection{CacheDir: filepath.Join(t.TempDir(), "cache")},
		GitLab: &GitLabSection{
			Address:                  gl.URL,
			AuthenticationSecretFile: gl.SecretFile,
			CACertificateFile:        gl.CAFile,
			Git:                      GitLabGit{Username: gl.GitUsername, PasswordFile: gl.GitPasswordFile},
		},
	}
	cfg.Agent.KubernetesAPI.Listen.Address = "127.0.0.1:0"
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &glEnv{env: &env{t: t, cfg: cfg}, gl: gl, agent: a, token: gl.IssueToken(a), cfgProj: cfgProj, apps: apps}
}

// dialToken connects a bare agent with token.
func (e *env) dialToken(token string) (*testAgent, error) {
	e.t.Helper()
	d := &tunnel.Dialer{
		Address: e.address(),
		Hello:   tunnel.Hello{Token: token, AgentVersion: version.Version, Protocol: tunnel.MaxProtocol},
		Session: fastSession,
	}
	sess, err := d.Dial(context.Background())
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient("passthrough:///kas",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return sess.OpenStream() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		sess.Close()
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		cc.Close()
		sess.Close()
	})
	return &testAgent{sess: sess, cc: cc, gitops: rpc.NewGitOpsClient(cc), config: rpc.NewConfigurationClient(cc)}, nil
}

// firstConfig reads the first config kas sends the agent; the stream
// stays open (following new commits) until the test ends.
func firstConfig(t *testing.T, a *testAgent) *rpc.ConfigurationResponse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := a.config.GetConfiguration(ctx, &rpc.ConfigurationRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("config stream: %v", err)
	}
	return resp
}

// TestGitLabAgent: the agent GitLab registered connects with its
// GitLab-issued token, gets its config from the config project's default
// branch over HTTPS git, GitLab is told the config, a manifest project
// GitLab allows is sent and one it refuses is refused with a reason in
// the status API and the log; the status API names the agent by id.
func TestGitLabAgent(t *testing.T) {
	e := newGitLabEnv(t, time.Minute, time.Minute)
	e.start()
	a, err := e.dialToken(e.token)
	if err != nil {
		t.Fatal(err)
	}
	resp := firstConfig(t, a)
	head := e.cfgProj.Repo.Git("rev-parse", "HEAD")
	if resp.Error != "" || resp.CommitId != head || resp.AgentName != "prod" || !strings.Contains(string(resp.ConfigJson), "group/apps") {
		t.Fatalf("config = %+v, want commit %s with group/apps", resp, head)
	}
	tu.Eventually(t, setTimeout, "agent_configuration posted", func() bool {
		for _, c := range e.gl.AgentConfigurations() {
			if c.AgentID == e.agent.ID && strings.Contains(string(c.AgentConfig), "group/apps") {
				return true
			}
		}
		return false
	})

	w := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "group/apps"})
	set := w.next(t, setTimeout)
	if set.commit != e.apps.Repo.Git("rev-parse", "HEAD") || string(set.data["/app.yaml"]) != "kind: ConfigMap\n" {
		t.Fatalf("group/apps set = %+v", set)
	}
	refused := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "other/secret"})
	err = refused.end(t, setTimeout)
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "GitLab does not let agent \"prod\" read it") {
		t.Fatalf("forbidden project: %v, want NotFound saying GitLab refused it", err)
	}
	key := strconv.FormatInt(e.agent.ID, 10)
	var st AgentStatus
	if code := e.getJSON("/api/v1/agents/"+key, &st); code != 200 {
		t.Fatalf("status API: %d", code)
	}
	if st.ID != e.agent.ID || st.Name != "prod" || st.ConfigProject != "group/agents" || st.ConnectedSessions != 1 {
		t.Fatalf("status = %+v", st)
	}
	var secretErr string
	for _, p := range st.Projects {
		if p.ID == "other/secret" {
			secretErr = p.Error
		}
	}
	if !strings.Contains(secretErr, "GitLab does not let agent") {
		t.Fatalf("status of other/secret: %q, want the refusal", secretErr)
	}
	if !e.kasLog.Contains("Manifest project refused") || !e.kasLog.Contains("agent_id="+key) {
		t.Fatalf("kas log lacks the refusal with agent_id:\n%s", e.kasLog)
	}
	var list struct{ Agents []AgentStatus }
	e.getJSON("/api/v1/agents", &list)
	if len(list.Agents) != 1 || list.Agents[0].ID != e.agent.ID {
		t.Fatalf("agents list = %+v", list)
	}
	if e.kasLog.Contains(e.token) {
		t.Fatal("kas log contains the agent token")
	}
	// A new commit in the config project reaches GitLab too.
	e.cfgProj.Commit("change", map[string]string{".gitlab/agents/prod/config.yaml": "gitops:\n  manifest_projects:\n  - id: group/apps\n"})
	tu.Eventually(t, setTimeout, "second agent_configuration", func() bool { return len(e.gl.AgentConfigurations()) == 2 })
	if got := e.gl.AgentConfigurations()[1]; strings.Contains(string(got.AgentConfig), "other/secret") {
		t.Fatalf("second agent_configuration is the old config: %s", got.AgentConfig)
	}
}

// TestGitLabTokens: a wrong token is refused with the same answer as a
// revoked one; a revoked token still connects within info_cache_ttl and
// is refused after it; GitLab being down keeps the connected agent served
// and lets a known agent reconnect, while a new one is refused with a
// log line saying why it waits.
func TestGitLabTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out token cache lifetimes: not in -short")
	}
	const ttl = 1500 * time.Millisecond
	e := newGitLabEnv(t, ttl, 200*time.Millisecond)
	e.start()
	_, wrongErr := e.dialToken("glagent-wrong")
	if wrongErr == nil || !strings.Contains(wrongErr.Error(), "unknown agent token") {
		t.Fatalf("wrong token: %v", wrongErr)
	}

	a, err := e.dialToken(e.token)
	if err != nil {
		t.Fatal(err)
	}
	firstConfig(t, a)
	revoked := e.gl.IssueToken(e.agent)
	if _, err := e.dialToken(revoked); err != nil {
		t.Fatal(err)
	}
	e.gl.RevokeToken(revoked)
	revokedAt := time.Now()
	if _, err := e.dialToken(revoked); err != nil && time.Since(revokedAt) < ttl-100*time.Millisecond {
		t.Fatalf("revoked token refused within info_cache_ttl: %v", err)
	}
	var revErr error
	tu.Eventually(t, ttl+setTimeout, "revoked token refused", func() bool {
		var c *testAgent
		if c, revErr = e.dialToken(revoked); c != nil {
			// Still accepted from the cache: close it, so the retries do
			// not run into limits.max_connections_per_agent.
			c.cc.Close()
			c.sess.Close()
		}
		return revErr != nil
	})
	if time.Since(revokedAt) > ttl+2*time.Second {
		t.Fatalf("revoked token refused only after %v (info_cache_ttl %v)", time.Since(revokedAt), ttl)
	}
	if revErr.Error() != wrongErr.Error() {
		t.Fatalf("revoked token answer %q differs from a wrong token's %q", revErr, wrongErr)
	}
	// A revoked token closes every connection of its agent here (see
	// TestGitLabRevokedTokenClosesConnections); the agent reconnects
	// with its good token, as agentk does.
	select {
	case <-a.sess.CloseChan():
	case <-time.After(ttl + setTimeout):
		t.Fatal("the agent's connections stay open after one of its tokens was revoked")
	}
	if a, err = e.dialToken(e.token); err != nil {
		t.Fatal(err)
	}

	w := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "group/apps"})
	w.next(t, setTimeout)
	w.stop()
	// GitLab goes down once the good answers' cache entries have expired:
	// kas runs as configured (info_cache_ttl), on real time, so this wait
	// is the TTL under test, not a guess at an event.
	time.Sleep(ttl)
	e.gl.SetDown(true)
	// The connected agent is still connected and served: a new manifest
	// stream is answered from kas's mirror and the last project_info.
	w = a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "group/apps"})
	w.next(t, setTimeout)
	if n := e.kas.ConnectedSessions(strconv.FormatInt(e.agent.ID, 10)); n == 0 {
		t.Fatal("GitLab down disconnected the agent")
	}
	// A known agent reconnects from its last good agent_info.
	if _, err := e.dialToken(e.token); err != nil {
		t.Fatalf("known agent refused while GitLab is down: %v", err)
	}
	// A new one waits.
	fresh := e.gl.IssueToken(e.agent)
	_, err = e.dialToken(fresh)
	if err == nil || !strings.Contains(err.Error(), "GitLab is unavailable") {
		t.Fatalf("new agent while GitLab is down: %v", err)
	}
	if !e.kasLog.Contains("New agent connection waits: GitLab is unavailable") {
		t.Fatalf("kas log does not say why the new agent waits:\n%s", e.kasLog)
	}
	e.gl.SetDown(false)
	if _, err := e.dialToken(fresh); err != nil {
		t.Fatalf("new agent after GitLab is back: %v", err)
	}
}

// TestGitLabConfigValidation: bad gitlab: keys are named.
func TestGitLabConfigValidation(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"gitlab:\n  address: http://gitlab.example.com\n  authentication_secret_file: /s\n", "gitlab.address: \"http://gitlab.example.com\" sends agent tokens"},
		{"gitlab:\n  authentication_secret_file: /s\n", "gitlab.address: missing"},
		{"gitlab:\n  address: https://g\n", "gitlab.authentication_secret_file: missing"},
		{"gitlab:\n  address: https://g\n  authentication_secret_file: /s\n  git:\n    username: x\n", "gitlab.git: username and password_file"},
		{"gitlab:\n  address: https://g\n  authentication_secret_file: /s\nagents:\n- name: a\n", "agents: must be empty with gitlab"},
		{"gitlab:\n  address: https://g\n  authentication_secret_file: /s\nusers:\n- name: u\n  agents: [prod]\n", "users[0].agents[0]: \"prod\": with gitlab:, name agents by their GitLab agent id"},
		{"gitlab:\n  address: https://g\n  authentication_secret_file: /s\n  allow_insecure_http: true\nagent:\n  info_cache_ttl: -1s\n", "agent.info_cache_ttl: must be positive"},
		{"api:\n  listen:\n    address: 127.0.0.1:0\n", "api.listen.authentication_secret_file: missing"},
	} {
		_, err := ParseConfig([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
	for _, ok := range []string{
		"gitlab:\n  address: http://127.0.0.1:8080\n  authentication_secret_file: /s\n",
		"gitlab:\n  address: http://gitlab.internal\n  authentication_secret_file: /s\n  allow_insecure_http: true\n",
		"gitlab:\n  address: https://gitlab.example.com/\n  authentication_secret_file: /s\n  git:\n    username: kas\n    password_file: /p\nusers:\n- name: u\n  agents: [\"7\"]\n",
	} {
		if _, err := ParseConfig([]byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	cfg, _ := ParseConfig([]byte("gitlab:\n  address: https://g\n  authentication_secret_file: /s\n"))
	if cfg.Agent.InfoCacheTTL != 300*time.Second || cfg.Agent.InfoCacheErrorTTL != 60*time.Second || cfg.Observability.UsageReportingPeriod != time.Minute {
		t.Errorf("defaults: %v %v %v", cfg.Agent.InfoCacheTTL, cfg.Agent.InfoCacheErrorTTL, cfg.Observability.UsageReportingPeriod)
	}
}

// TestAgentProjects: a standalone agent reads its config project and the
// repositories agents[].projects gives it, nothing else: without the key
// (or with []) only its config project, and a refusal names the agent and
// agents[].projects.
func TestAgentProjects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		projects []string
	}{{"unset", nil}, {"empty", []string{}}} {
		e, repo := newGitOpsEnv(t, func(c *Config) { c.Agents[0].Projects = tc.projects })
		repo.Commit("m", map[string]string{"a.yaml": "kind: ConfigMap\n"})
		e.start()
		a := e.dialAgent()
		err := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject}).end(t, setTimeout)
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "agents[].projects") || !strings.Contains(err.Error(), fmt.Sprintf("agent %q", agentName)) {
			t.Fatalf("%s: repository not in agents[].projects: %v, want NotFound naming agent %q and agents[].projects", tc.name, err, agentName)
		}
		// The config project is always readable.
		a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "group/config"}).next(t, setTimeout)
	}

	e2, repo2 := newGitOpsEnv(t, func(c *Config) { c.Agents[0].Projects = []string{manifestProject} })
	repo2.Commit("m", map[string]string{"a.yaml": "kind: ConfigMap\n"})
	e2.start()
	a2 := e2.dialAgent()
	a2.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject}).next(t, setTimeout)
	a2.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "group/config"}).next(t, setTimeout)

	if _, err := ParseConfig([]byte("repositories:\n- id: a\n  url: file:///x\nagents:\n- name: p\n  projects: [b]\n")); err == nil || !strings.Contains(err.Error(), `agents[0].projects[0]: "b" is not a repositories[].id`) {
		t.Fatalf("unknown project: %v", err)
	}
}

// apiClient is GitLab calling kas's api listener, with a JWT signed by
// key for aud.
func apiClient(t *testing.T, addr string, key []byte, aud string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "bearer "+gitlab.SignJWT(key, "gitlab.example.com", aud, time.Now()))
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestGitLabAPIListener: GitLab lists the connected agent (with what
// agentk said about itself) by agent id and by config project id, a call
// with a bad JWT is refused, a push event fetches the project at once, and
// the agent leaves the list when it disconnects.
func TestGitLabAPIListener(t *testing.T) {
	e := newGitLabEnv(t, time.Minute, time.Minute)
	e.cfg.Agent.GitOps.PollPeriod = time.Hour // only the push event fetches
	e.cfg.Agent.Configuration.PollPeriod = time.Hour
	e.cfg.API = &APISection{Listen: APIListen{Address: "127.0.0.1:0", AuthenticationSecretFile: e.gl.SecretFile}}
	e.start()
	addr := e.kas.Addr("api").String()

	d := &tunnel.Dialer{
		Address: e.address(),
		Hello: tunnel.Hello{Token: e.token, AgentVersion: version.Version, Protocol: tunnel.MaxProtocol,
			PodNamespace: "gitlab-agent", PodName: "agentk-7d9f", KubernetesVersion: "v1.37.0", GitCommit: "abc1234"},
		Session: fastSession,
	}
	sess, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	tu.Eventually(t, setTimeout, "agent connected", func() bool { return e.kas.ConnectedSessions(strconv.FormatInt(e.agent.ID, 10)) == 1 })

	tracker := trackerrpc.NewAgentTrackerClient(apiClient(t, addr, e.gl.Secret, gitlab.AudienceKas))
	ctx := context.Background()
	byAgent, err := tracker.GetConnectedAgents(ctx, &trackerrpc.GetConnectedAgentsRequest{Request: &trackerrpc.GetConnectedAgentsRequest_AgentId{AgentId: e.agent.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(byAgent.Agents) != 1 {
		t.Fatalf("connected agents = %v, want 1", byAgent.Agents)
	}
	c := byAgent.Agents[0]
	m := c.GetAgentMeta()
	// The pod, commit and cluster fields travel in the hello over the
	// real wire (TestConnectionInfo checks how kas maps each of them).
	if c.AgentId != e.agent.ID || c.ProjectId != e.cfgProj.ID || c.ConnectionId == 0 || time.Since(c.ConnectedAt.AsTime()) > time.Minute ||
		m.GetVersion() != version.Version || m.GetPodNamespace() != "gitlab-agent" || m.GetPodName() != "agentk-7d9f" || m.GetCommitId() != "abc1234" ||
		m.GetKubernetesVersion() == nil {
		t.Fatalf("connected agent = %v", c)
	}
	byProject, err := tracker.GetConnectedAgents(ctx, &trackerrpc.GetConnectedAgentsRequest{Request: &trackerrpc.GetConnectedAgentsRequest_ProjectId{ProjectId: e.cfgProj.ID}})
	if err != nil || len(byProject.Agents) != 1 || byProject.Agents[0].ConnectionId != c.ConnectionId {
		t.Fatalf("by project: %v, %v", byProject, err)
	}
	byIDs, err := tracker.GetConnectedAgentsByAgentIDs(ctx, &trackerrpc.GetConnectedAgentsByAgentIDsRequest{AgentIds: []int64{e.agent.ID, 999}})
	if err != nil || len(byIDs.Agents) != 1 {
		t.Fatalf("by agent ids: %v, %v", byIDs, err)
	}
	for name, cc := range map[string]*grpc.ClientConn{
		"wrong key":      apiClient(t, addr, []byte(strings.Repeat("x", 32)), gitlab.AudienceKas),
		"wrong audience": apiClient(t, addr, e.gl.Secret, gitlab.AudienceGitLab),
	} {
		_, err := trackerrpc.NewAgentTrackerClient(cc).GetConnectedAgents(ctx, &trackerrpc.GetConnectedAgentsRequest{Request: &trackerrpc.GetConnectedAgentsRequest_AgentId{AgentId: e.agent.ID}})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want Unauthenticated", name, err)
		}
	}

	// A push event fetches the project now (the poll period is an hour).
	a, err := e.dialToken(e.token)
	if err != nil {
		t.Fatal(err)
	}
	w := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "group/apps"})
	w.next(t, setTimeout)
	pushed := e.apps.Commit("push", map[string]string{"b.yaml": "kind: ConfigMap\n"})
	notify := notifications.NewNotificationsClient(apiClient(t, addr, e.gl.Secret, gitlab.AudienceKas))
	if _, err := notify.GitPushEvent(ctx, &notifications.GitPushEventRequest{Project: &notifications.Project{Id: e.apps.ID, FullPath: "group/apps"}}); err != nil {
		t.Fatal(err)
	}
	if set := w.next(t, setTimeout); set.commit != pushed {
		t.Fatalf("after the push event: %s, want %s", set.commit, pushed)
	}
	w.stop()
	a.sess.Close()

	sess.Close()
	tu.Eventually(t, setTimeout, "agent gone from the tracker", func() bool {
		r, err := tracker.GetConnectedAgents(ctx, &trackerrpc.GetConnectedAgentsRequest{Request: &trackerrpc.GetConnectedAgentsRequest_AgentId{AgentId: e.agent.ID}})
		return err == nil && len(r.Agents) == 0
	})
}

// TestStatusProjectsBounded: an agent asking for many manifest projects
// it may not read does not grow the status store past its bound, and a
// real project is still served and shown.
func TestStatusProjectsBounded(t *testing.T) {
	e := newGitLabEnv(t, time.Minute, time.Minute)
	e.start()
	a, err := e.dialToken(e.token)
	if err != nil {
		t.Fatal(err)
	}
	for i := range kasstatus.MaxProjects + 50 {
		err := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "made/up-" + strconv.Itoa(i)}).end(t, setTimeout)
		if status.Code(err) != codes.NotFound {
			t.Fatalf("made-up project %d: %v", i, err)
		}
	}
	a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "group/apps"}).next(t, setTimeout)
	var st AgentStatus
	e.getJSON("/api/v1/agents/"+strconv.FormatInt(e.agent.ID, 10), &st)
	if len(st.Projects) > kasstatus.MaxProjects {
		t.Fatalf("status holds %d projects, bound is %d", len(st.Projects), kasstatus.MaxProjects)
	}
}

// TestKubeconfigGitLab: with gitlab:, kas kubeconfig takes the GitLab
// agent id that users[].agents names.
func TestKubeconfigGitLab(t *testing.T) {
	cfg, err := ParseConfig([]byte("gitlab:\n  address: https://g\n  authentication_secret_file: /s\nusers:\n- name: alice\n  token_sha256: [\"" + HashToken("x") + "\"]\n  agents: [\"7\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	kc, err := Kubeconfig(cfg, KubeconfigOptions{Agent: "7", User: "alice", Server: "https://kas.example.com"})
	if err != nil || !strings.Contains(string(kc), "/agents/7") {
		t.Fatalf("kubeconfig: %v\n%s", err, kc)
	}
	if _, err := Kubeconfig(cfg, KubeconfigOptions{Agent: "8", User: "alice"}); err == nil || !strings.Contains(err.Error(), "may not use agent") {
		t.Fatalf("agent 8: %v", err)
	}
}
