package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/testpki"
	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/internal/testutil/fakegitlab"
	"kubetunnel/internal/testutil/redisserver"
	"kubetunnel/internal/testutil/stack"
	"kubetunnel/test/e2e/kubelet"
)

// TestGitLabAccess: GitLab's callers reach the cluster through a real kas
// and agentk, with the real kubectl, the fake GitLab deciding who may use
// the agent:
//   - a CI job's kubeconfig exactly as GitLab injects it; access_as ci_job
//     is gitlab:ci_job:<id> in kubectl auth whoami, and RBAC bound to
//     gitlab:project_env_tier:<project>:production allows one namespace
//     and forbids another; exec, attach, port-forward, logs -f, cp and a
//     watch work through it; access_as impersonate and agent;
//   - a job GitLab does not allow the agent: 403;
//   - a personal access token as user: gitlab:user:<name> with
//     gitlab:project_role:<id>:<role> groups;
//   - GitLab's session cookie with its CSRF token (a wrong one: 401);
//   - CORS for gitlab.external_url only;
//   - the audit line and GitLab's usage counter.
func TestGitLabAccess(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	allowed, forbidden := namespace(t), namespace(t)
	admin := cp.KubeconfigPath
	const externalURL = "https://gitlab.example.com"

	gl := fakegitlab.New(t)
	cfgProject := gl.AddProject("group/agents", map[string]string{".gitlab/agents/ci/config.yaml": `ci_access:
  projects:
  - id: group/app
    default_namespace: ` + allowed + `
    access_as:
      ci_job: {}
user_access:
  access_as:
    user: {}
  projects:
  - id: group/app
`})
	app := gl.AddProject("group/app", map[string]string{"README": "app"})
	agent := gl.AddAgent("ci", cfgProject)
	agentID := strconv.FormatInt(agent.ID, 10)
	projectID := strconv.FormatInt(app.ID, 10)

	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile, err := ca.Issue(t.TempDir(), "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := testutil.FreeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	agentAddr, k8sAddr, obsAddr := ports[0], ports[1], ports[2]
	cfgFile := filepath.Join(dir, "kas.yaml")
	writeTestFile(t, cfgFile, fmt.Sprintf(`agent:
  listen:
    address: %s
  configuration:
    poll_period: 1s
  kubernetes_api:
    url_path_prefix: /k8s-proxy/
    listen:
      address: %s
      certificate_file: %s
      key_file: %s
observability:
  listen:
    address: %s
  usage_reporting_period: 1s
git:
  cache_dir: %s
gitlab:
  address: %s
  external_url: %s
  authentication_secret_file: %s
  ca_certificate_file: %s
  git:
    username: %s
    password_file: %s
`, agentAddr, k8sAddr, certFile, keyFile, obsAddr, filepath.Join(dir, "cache"),
		gl.URL, externalURL, gl.SecretFile, gl.CAFile, gl.GitUsername, gl.GitPasswordFile))
	kas := startProc(t, filepath.Join(binDir, "kas"), filepath.Join(dir, "kas.log"), "--config", cfgFile)
	testutil.Eventually(t, 30*time.Second, "kas ready", func() bool { return httpOK("http://" + obsAddr + "/readyz") })

	agentKubeconfig, err := cp.KubeconfigFor(controlplane.User{Name: stack.AgentkUser, Token: stack.AgentkToken})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "agent-token")
	writeTestFile(t, tokenFile, gl.IssueToken(agent)+"\n")
	agentObs, err := testutil.FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	agentk := startProc(t, filepath.Join(binDir, "agentk"), filepath.Join(dir, "agentk.log"),
		"--kas-address", "ws://"+agentAddr+"/", "--token-file", tokenFile, "--kubeconfig", agentKubeconfig,
		"--observability-listen", agentObs[0])
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kas log:\n%s\nagentk log:\n%s", kas.output(), agentk.output())
		}
	})

	// The pod of exec and port-forward, played by the stand-in kubelet.
	k, err := kubelet.Start(t.Context(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if err := k.RegisterNode(t.Context(), cp.Clientset(), "node-"+allowed); err != nil {
		t.Fatal(err)
	}
	if err := k.CreatePod(t.Context(), cp.Clientset(), allowed, "app"); err != nil {
		t.Fatal(err)
	}
	playBusybox(t, k)

	// RBAC as a GitLab user writes it for production jobs of a project.
	mustKubectl(t, admin, fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: %[1]s}
rules:
- apiGroups: [""]
  resources: [configmaps, pods]
  verbs: [get, list, create]
- apiGroups: [""]
  resources: [pods/exec, pods/portforward, pods/attach, pods/log]
  verbs: [get, create]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: production-jobs, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "gitlab:project_env_tier:%[2]s:production"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: %[1]s}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: developers, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "gitlab:project_role:%[2]s:developer"}
`, allowed, projectID), "apply", "-f", "-")

	// The kubeconfig GitLab injects into a job (KUBECONFIG).
	job, jobToken := gl.AddJob(app, "bob", agent)
	gl.ConfigureJob(job, func(j *fakegitlab.Job) {
		j.AccessAs = json.RawMessage(`{"ci_job":{}}`)
		j.Environment = &gitlab.Environment{Slug: "production", Tier: "production"}
	})
	ciKubeconfig := filepath.Join(dir, "ci-kubeconfig")
	writeTestFile(t, ciKubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: gitlab
  cluster:
    server: https://%[1]s/k8s-proxy
    certificate-authority: %[2]s
users:
- name: agent:%[3]s
  user:
    token: ci:%[3]s:%[4]s
contexts:
- name: group/agents:ci
  context:
    cluster: gitlab
    user: agent:%[3]s
    namespace: %[5]s
`, k8sAddr, caFile, agentID, jobToken, allowed))
	// What a job's script does first.
	mustKubectl(t, ciKubeconfig, "", "config", "use-context", "group/agents:ci")

	var who struct {
		Status struct {
			UserInfo struct {
				Username string              `json:"username"`
				Groups   []string            `json:"groups"`
				Extra    map[string][]string `json:"extra"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	testutil.Eventually(t, 60*time.Second, "the agent connected and the job reaching the cluster", func() bool {
		out, _, err := kubectl(t, ciKubeconfig, "", "auth", "whoami", "-o", "json")
		return err == nil && json.Unmarshal([]byte(out), &who) == nil
	})
	ui := who.Status.UserInfo
	jobUser := "gitlab:ci_job:" + strconv.FormatInt(job.ID, 10)
	if ui.Username != jobUser || !contains(ui.Groups, "gitlab:ci_job") || !contains(ui.Groups, "gitlab:project_env_tier:"+projectID+":production") ||
		!contains(ui.Groups, "gitlab:project:"+projectID) || !contains(ui.Groups, "gitlab:project_env:"+projectID+":production") {
		t.Fatalf("whoami as the CI job: %+v", ui)
	}
	if got := ui.Extra["agent.gitlab.com/id"]; len(got) != 1 || got[0] != agentID {
		t.Fatalf("whoami extra agent.gitlab.com/id = %v, want %s (all: %v)", got, agentID, ui.Extra)
	}
	if got := ui.Extra["agent.gitlab.com/environment_tier"]; len(got) != 1 || got[0] != "production" {
		t.Fatalf("whoami extra environment_tier = %v", got)
	}
	// The RoleBinding allows the production namespace and nothing else.
	mustKubectl(t, ciKubeconfig, "", "create", "configmap", "deployed", "--from-literal=by=ci")
	if out := mustKubectl(t, ciKubeconfig, "", "get", "configmap", "deployed", "-o", "jsonpath={.data.by}"); out != "ci" {
		t.Fatalf("configmap created by the job: %q", out)
	}
	if _, stderr, err := kubectl(t, ciKubeconfig, "", "get", "configmaps", "-n", forbidden); err == nil || !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, jobUser) {
		t.Fatalf("job in another namespace: err %v, %s", err, stderr)
	}

	// Streaming through the CI context: exec, attach, port-forward and
	// logs -f over both of kubectl's protocols, cp, and a watch.
	checkStreaming(t, &streamPod{kubeconfig: ciKubeconfig, ns: allowed, name: "app",
		attachable:    func(*testing.T) string { return "app" },
		sessionsEnded: func(*testing.T) bool { return k.Active() == 0 }})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	src := filepath.Join(dir, "to-pod.txt")
	writeTestFile(t, src, "copied by a CI job\n")
	podDir := t.TempDir()
	if out, err := kubectlEnv(ctx, ciKubeconfig, nil, "cp", src, "app:"+podDir+"/in-pod.txt").CombinedOutput(); err != nil {
		t.Fatalf("cp through the CI context: %v %s", err, out)
	}
	if got := readFile(t, podDir+"/in-pod.txt"); got != "copied by a CI job\n" {
		t.Fatalf("file in the pod: %q", got)
	}
	watch := kubectlEnv(ctx, ciKubeconfig, nil, "get", "configmaps", "--watch", "-o", "name")
	wout, _ := watch.StdoutPipe()
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	listed, seen := make(chan struct{}), make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(wout)
		for sc.Scan() {
			switch sc.Text() {
			case "configmap/deployed":
				close(listed)
			case "configmap/watched":
				seen <- true
				return
			}
		}
		seen <- false
	}()
	select {
	case <-listed:
	case <-time.After(15 * time.Second):
		t.Fatal("the watch through the CI context did not list the configmap")
	}
	mustKubectl(t, ciKubeconfig, "", "create", "configmap", "watched")
	select {
	case ok := <-seen:
		if !ok {
			t.Fatal("the watch ended before the new configmap")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the watch through the CI context did not see the new configmap")
	}
	watch.Process.Kill()
	watch.Wait()

	// GitLab down: a job kas has an answer for (cached, 60 s) goes on; a
	// job kas never saw is 503 with the reason.
	_, freshToken := gl.AddJob(app, "carol", agent)
	gl.SetDown(true)
	t.Cleanup(func() { gl.SetDown(false) })
	if out := mustKubectl(t, ciKubeconfig, "", "get", "configmap", "watched", "-o", "name"); strings.TrimSpace(out) != "configmap/watched" {
		t.Fatalf("cached job with GitLab down: %q", out)
	}
	down := exec.CommandContext(ctx, "curl", "-sS", "--cacert", caFile, "-w", "\n%{http_code}", "-H", "Authorization: Bearer ci:"+agentID+":"+freshToken,
		"https://"+k8sAddr+"/k8s-proxy/version")
	if out, err := down.Output(); err != nil || !strings.HasSuffix(string(out), "\n503") || !strings.Contains(string(out), "GitLab is unavailable") {
		t.Fatalf("new job with GitLab down: %v %s", err, out)
	}
	gl.SetDown(false)

	// access_as impersonate and agent, through the same kubeconfig.
	for _, c := range []struct {
		accessAs    string
		user, group string
	}{
		{`{"impersonate":{"username":"deployer","groups":["team-a"],"extra":[{"key":"example.com/team","val":["a"]}]}}`, "deployer", "team-a"},
		{`{"agent":{}}`, stack.AgentkUser, ""},
	} {
		j, tok := gl.AddJob(app, "bob", agent)
		gl.ConfigureJob(j, func(j *fakegitlab.Job) { j.AccessAs = json.RawMessage(c.accessAs) })
		kc := filepath.Join(dir, "as-kubeconfig")
		writeTestFile(t, kc, strings.ReplaceAll(readFile(t, ciKubeconfig), jobToken, tok))
		out := mustKubectl(t, kc, "", "auth", "whoami", "-o", "json")
		who.Status.UserInfo.Groups = nil
		if err := json.Unmarshal([]byte(out), &who); err != nil {
			t.Fatal(err)
		}
		if ui := who.Status.UserInfo; ui.Username != c.user || (c.group != "" && !contains(ui.Groups, c.group)) {
			t.Fatalf("access_as %s: %+v", c.accessAs, ui)
		}
	}

	// A job of a project GitLab does not allow the agent.
	_, otherToken := gl.AddJob(app, "eve")
	otherKubeconfig := filepath.Join(dir, "other-kubeconfig")
	writeTestFile(t, otherKubeconfig, strings.ReplaceAll(readFile(t, ciKubeconfig), jobToken, otherToken))
	if _, stderr, err := kubectl(t, otherKubeconfig, "", "get", "configmaps"); err == nil || !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, "may not use this agent") {
		t.Fatalf("job without the agent: err %v, %s", err, stderr)
	}
	// An unknown job token.
	writeTestFile(t, otherKubeconfig, strings.ReplaceAll(readFile(t, ciKubeconfig), jobToken, "glcbt-unknown"))
	if _, stderr, err := kubectl(t, otherKubeconfig, "", "get", "configmaps"); err == nil || !strings.Contains(stderr, "You must be logged in") || !strings.Contains(stderr, "does not know this CI job token") {
		t.Fatalf("unknown job token: err %v, %s", err, stderr)
	}

	// A user with a personal access token, access_as user.
	user, pat := gl.AddUser("dana", agent)
	gl.ConfigureUser(user, func(u *fakegitlab.User) {
		u.AsUser = true
		u.Projects = []gitlab.RoleGrant{{ID: gitlab.ID(app.ID), Roles: []string{"developer"}}}
	})
	patKubeconfig := filepath.Join(dir, "pat-kubeconfig")
	writeTestFile(t, patKubeconfig, strings.ReplaceAll(readFile(t, ciKubeconfig), "ci:"+agentID+":"+jobToken, "pat:"+agentID+":"+pat))
	out := mustKubectl(t, patKubeconfig, "", "auth", "whoami", "-o", "json")
	if err := json.Unmarshal([]byte(out), &who); err != nil {
		t.Fatal(err)
	}
	if ui := who.Status.UserInfo; ui.Username != "gitlab:user:dana" || !contains(ui.Groups, "gitlab:user") || !contains(ui.Groups, "gitlab:project_role:"+projectID+":developer") {
		t.Fatalf("whoami with a PAT: %+v", ui)
	}
	if out := mustKubectl(t, patKubeconfig, "", "get", "configmap", "deployed", "-o", "jsonpath={.data.by}"); out != "ci" {
		t.Fatalf("developer reading the configmap: %q", out)
	}
	if _, stderr, err := kubectl(t, patKubeconfig, "", "create", "configmap", "by-dana"); err == nil || !strings.Contains(stderr, `User "gitlab:user:dana" cannot create`) {
		t.Fatalf("reader created a configmap: err %v, %s", err, stderr)
	}

	// GitLab's Kubernetes dashboard: session cookie, CSRF token, CORS.
	cookie, csrf := gl.AddSession(user)
	base := "https://" + k8sAddr + "/k8s-proxy"
	curl := func(args ...string) (code int, headers, body string) {
		t.Helper()
		hf := filepath.Join(dir, "curl-headers")
		all := append([]string{"-sS", "--cacert", caFile, "-D", hf, "-o", filepath.Join(dir, "curl-body"), "-w", "%{http_code}"}, args...)
		out, err := exec.CommandContext(ctx, "curl", all...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		code, _ = strconv.Atoi(string(out))
		return code, readFile(t, hf), readFile(t, filepath.Join(dir, "curl-body"))
	}
	review := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	sessionArgs := func(token string) []string {
		return []string{"-H", "Cookie: _gitlab_kas=" + cookie, "-H", "Gitlab-Agent-Id: " + agentID, "-H", "X-Csrf-Token: " + token,
			"-H", "Origin: " + externalURL, "-H", "Content-Type: application/json",
			"--data", review, base + "/apis/authentication.k8s.io/v1/selfsubjectreviews"}
	}
	code, hdr, body := curl(sessionArgs(csrf)...)
	who.Status.UserInfo.Username = ""
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &who) != nil || who.Status.UserInfo.Username != "gitlab:user:dana" {
		t.Fatalf("session cookie: %d %s", code, body)
	}
	if !strings.Contains(hdr, "Access-Control-Allow-Origin: "+externalURL) || !strings.Contains(hdr, "Access-Control-Allow-Credentials: true") || !strings.Contains(hdr, "Vary: Origin") {
		t.Fatalf("CORS headers for GitLab's origin:\n%s", hdr)
	}
	if code, _, body := curl(sessionArgs("wrong-csrf-token")...); code != http.StatusUnauthorized {
		t.Fatalf("wrong CSRF token: %d %s", code, body)
	}
	// Preflights: GitLab's origin allowed, another refused.
	code, hdr, _ = curl("-X", "OPTIONS", "-H", "Origin: "+externalURL, "-H", "Access-Control-Request-Method: GET",
		"-H", "Access-Control-Request-Headers: gitlab-agent-id, x-csrf-token", base+"/api/v1/namespaces")
	if code != http.StatusOK || !strings.Contains(hdr, "Access-Control-Allow-Origin: "+externalURL) || !strings.Contains(strings.ToLower(hdr), "access-control-allow-headers: gitlab-agent-id, x-csrf-token") {
		t.Fatalf("preflight from GitLab: %d\n%s", code, hdr)
	}
	code, hdr, _ = curl("-X", "OPTIONS", "-H", "Origin: https://evil.example", "-H", "Access-Control-Request-Method: GET", base+"/api/v1/namespaces")
	if code != http.StatusForbidden || strings.Contains(hdr, "Access-Control-Allow-Origin") {
		t.Fatalf("preflight from another origin: %d\n%s", code, hdr)
	}
	code, hdr, _ = curl("-H", "Origin: https://evil.example", "-H", "Cookie: _gitlab_kas="+cookie, "-H", "Gitlab-Agent-Id: "+agentID,
		"-H", "X-Csrf-Token: "+csrf, base+"/version")
	if code != http.StatusForbidden || strings.Contains(hdr, "Access-Control-Allow-Origin") {
		t.Fatalf("request from another origin: %d\n%s", code, hdr)
	}

	// The audit line names the caller kind, the job and the agent; GitLab
	// hears of the requests.
	testutil.Eventually(t, 10*time.Second, "audit lines", func() bool {
		log := kas.output()
		return strings.Contains(log, "kind=ci") && strings.Contains(log, "job="+strconv.FormatInt(job.ID, 10)) &&
			strings.Contains(log, "kind=pat") && strings.Contains(log, "kind=cookie") && strings.Contains(log, "gitlab_user=dana") &&
			strings.Contains(log, "agent_id="+agentID)
	})
	testutil.Eventually(t, 30*time.Second, "usage counter of proxied requests", func() bool {
		for _, u := range gl.Usage() {
			if u.Counters["k8s_api_proxy_request"] > 0 {
				return true
			}
		}
		return false
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGitLabAccessReplicas: a CI job calls the kas replica that does not
// hold the agent; the replica that does serves it with the job's identity
// (not as the agent). url_path_prefix is the default, /.
func TestGitLabAccessReplicas(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	ns := namespace(t)
	gl := fakegitlab.New(t)
	cfgProject := gl.AddProject("group/agents", map[string]string{".gitlab/agents/ci/config.yaml": "ci_access:\n  projects:\n  - id: group/app\n"})
	app := gl.AddProject("group/app", map[string]string{"README": "app"})
	agent := gl.AddAgent("ci", cfgProject)
	agentID := strconv.FormatInt(agent.ID, 10)
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile, err := ca.Issue(t.TempDir(), "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	redis := redisserver.Start(t)
	privSecret := filepath.Join(dir, "private-api-secret")
	writeTestFile(t, privSecret, strings.Repeat("cd", 32))
	var replicas []*glKas
	for i := range 2 {
		ports, err := testutil.FreeAddrs(4)
		if err != nil {
			t.Fatal(err)
		}
		k := &glKas{agentAddr: ports[0], k8sAddr: ports[1], obsAddr: ports[2]}
		cfgFile := filepath.Join(dir, fmt.Sprintf("kas-%d.yaml", i))
		writeTestFile(t, cfgFile, fmt.Sprintf(`agent:
  listen:
    address: %s
  kubernetes_api:
    listen:
      address: %s
      certificate_file: %s
      key_file: %s
observability:
  listen:
    address: %s
git:
  cache_dir: %s
gitlab:
  address: %s
  authentication_secret_file: %s
  ca_certificate_file: %s
  git:
    username: %s
    password_file: %s
redis:
  address: %s
  refresh_period: 1s
  agent_ttl: 10s
private_api:
  listen:
    address: %s
  authentication_secret_file: %s
`, k.agentAddr, k.k8sAddr, certFile, keyFile, k.obsAddr, filepath.Join(dir, fmt.Sprintf("cache-%d", i)),
			gl.URL, gl.SecretFile, gl.CAFile, gl.GitUsername, gl.GitPasswordFile, redis.Addr, ports[3], privSecret))
		k.glProc = startProc(t, filepath.Join(binDir, "kas"), filepath.Join(dir, fmt.Sprintf("kas-%d.log", i)), "--config", cfgFile)
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("kas %d ready", i), func() bool { return httpOK("http://" + k.obsAddr + "/readyz") })
		replicas = append(replicas, k)
	}
	agentKubeconfig, err := cp.KubeconfigFor(controlplane.User{Name: stack.AgentkUser, Token: stack.AgentkToken})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "agent-token")
	writeTestFile(t, tokenFile, gl.IssueToken(agent)+"\n")
	obs, err := testutil.FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	agentk := startProc(t, filepath.Join(binDir, "agentk"), filepath.Join(dir, "agentk.log"),
		"--kas-address", "ws://"+replicas[0].agentAddr+"/", "--token-file", tokenFile, "--kubeconfig", agentKubeconfig,
		"--observability-listen", obs[0])
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kas 0 log:\n%s\nkas 1 log:\n%s\nagentk log:\n%s", replicas[0].output(), replicas[1].output(), agentk.output())
		}
	})

	job, jobToken := gl.AddJob(app, "bob", agent)
	gl.ConfigureJob(job, func(j *fakegitlab.Job) { j.AccessAs = json.RawMessage(`{"ci_job":{}}`) })
	kc := filepath.Join(dir, "ci-kubeconfig")
	writeTestFile(t, kc, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: gitlab
  cluster:
    server: https://%[1]s
    certificate-authority: %[2]s
users:
- name: agent:%[3]s
  user:
    token: ci:%[3]s:%[4]s
contexts:
- name: group/agents:ci
  context:
    cluster: gitlab
    user: agent:%[3]s
    namespace: %[5]s
current-context: group/agents:ci
`, replicas[1].k8sAddr, caFile, agentID, jobToken, ns))
	var who struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	testutil.Eventually(t, 60*time.Second, "the job reaching the agent through the other replica", func() bool {
		out, _, err := kubectl(t, kc, "", "auth", "whoami", "-o", "json")
		return err == nil && json.Unmarshal([]byte(out), &who) == nil
	})
	if ui := who.Status.UserInfo; ui.Username != "gitlab:ci_job:"+strconv.FormatInt(job.ID, 10) || !contains(ui.Groups, "gitlab:project:"+strconv.FormatInt(app.ID, 10)) {
		t.Fatalf("whoami through the other replica: %+v", ui)
	}
	// The job has no RBAC here: it is not the agent (cluster-admin).
	if _, stderr, err := kubectl(t, kc, "", "get", "configmaps"); err == nil || !strings.Contains(stderr, "cannot list resource") {
		t.Fatalf("the job through the other replica: err %v, %s", err, stderr)
	}
	if log, ok := stack.WaitLog(replicas[0].output, "listener=private_api user=gitlab:ci_job:"); !ok {
		t.Fatalf("replica 0 did not serve the forwarded request:\n%s", log)
	}
}
