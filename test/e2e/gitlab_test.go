package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"kubetunnel/api/gitlab/agenttracker"
	trackerrpc "kubetunnel/api/gitlab/agenttracker/rpc"
	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/testpki"
	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/internal/testutil/fakegitlab"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/internal/testutil/redisserver"
	"kubetunnel/internal/testutil/stack"
)

// glProc is a kas or agentk process of the GitLab e2e test.
type glProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(t *testing.T, bin, log string, args ...string) *glProc {
	t.Helper()
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &glProc{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		cmd.Wait()
		f.Close()
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *glProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *glProc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// glKas is one kas replica with gitlab: set.
type glKas struct {
	*glProc
	agentAddr, k8sAddr, obsAddr, apiAddr string
}

// TestGitLab runs two real kas replicas (sharing a real redis-server)
// against the fake GitLab, and real agentk binaries with GitLab-issued
// tokens against a real kube-apiserver:
//   - the agent's config and the manifests of two projects GitLab lets it
//     read are applied; a third project GitLab refuses is refused (reason in
//     the status API and the log) and nothing of it applied;
//   - GitLab receives agent_configuration and usage metrics (kubectl through
//     kas, as a users[] caller naming the agent by id);
//   - GitLab's agent tracker, called with a gRPC client built from our
//     protos, lists the agents connected to both replicas;
//   - with GitLab down, the connected agent keeps working;
//   - a revoked token: the running agentk's connection is closed and its
//     reconnection refused once info_cache_ttl passed, and nothing the
//     agent applied is pruned.
func TestGitLab(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	ns := namespace(t)
	const ttl = 3 * time.Second

	gl := fakegitlab.New(t)
	prodCfg := gl.AddProject("group/agents", map[string]string{".gitlab/agents/prod/config.yaml": fmt.Sprintf(`gitops:
  manifest_projects:
  - id: group/apps-a
    default_namespace: %[1]s
  - id: group/apps-b
    default_namespace: %[1]s
  - id: other/secret
    default_namespace: %[1]s
`, ns)})
	appsA := gl.AddProject("group/apps-a", map[string]string{"cm.yaml": configMap("cm-a", "from apps-a")})
	appsB := gl.AddProject("group/apps-b", map[string]string{"cm.yaml": configMap("cm-b", "from apps-b")})
	gl.AddProject("other/secret", map[string]string{"cm.yaml": configMap("cm-secret", "must not be applied")})
	prod := gl.AddAgent("prod", prodCfg)
	gl.Allow(prod, appsA)
	gl.Allow(prod, appsB)
	stagingCfg := gl.AddProject("group/staging", map[string]string{".gitlab/agents/staging/config.yaml": "observability:\n  logging:\n    level: info\n"})
	staging := gl.AddAgent("staging", stagingCfg)
	prodToken, stagingToken := gl.IssueToken(prod), gl.IssueToken(staging)
	prodID := strconv.FormatInt(prod.ID, 10)

	// TLS for the Kubernetes API listener (kubectl sends tokens only over TLS).
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile, err := ca.Issue(t.TempDir(), "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	userToken := "user-" + hex.EncodeToString([]byte(t.Name()))
	redis := redisserver.Start(t)
	privSecret := filepath.Join(dir, "private-api-secret")
	writeTestFile(t, privSecret, strings.Repeat("ab", 32))

	var replicas []*glKas
	for i := range 2 {
		ports, err := testutil.FreeAddrs(5)
		if err != nil {
			t.Fatal(err)
		}
		k := &glKas{agentAddr: ports[0], k8sAddr: ports[1], obsAddr: ports[2], apiAddr: ports[3]}
		cfg := fmt.Sprintf(`agent:
  listen:
    address: %s
    drain_timeout: 5s
  configuration:
    poll_period: 1s
  gitops:
    poll_period: 1s
  info_cache_ttl: %s
  info_cache_error_ttl: 1s
  kubernetes_api:
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
  authentication_secret_file: %s
  ca_certificate_file: %s
  git:
    username: %s
    password_file: %s
api:
  listen:
    address: %s
    authentication_secret_file: %s
users:
  - name: alice
    token_sha256: [%q]
    agents: [%q]
redis:
  address: %s
  refresh_period: 1s
  agent_ttl: 10s
private_api:
  listen:
    address: %s
  authentication_secret_file: %s
`, k.agentAddr, ttl, k.k8sAddr, certFile, keyFile, k.obsAddr, filepath.Join(dir, fmt.Sprintf("cache-%d", i)),
			gl.URL, gl.SecretFile, gl.CAFile, gl.GitUsername, gl.GitPasswordFile, k.apiAddr, gl.SecretFile,
			sha256hex(userToken), prodID, redis.Addr, ports[4], privSecret)
		cfgFile := filepath.Join(dir, fmt.Sprintf("kas-%d.yaml", i))
		writeTestFile(t, cfgFile, cfg)
		k.glProc = startProc(t, filepath.Join(binDir, "kas"), filepath.Join(dir, fmt.Sprintf("kas-%d.log", i)), "--config", cfgFile)
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("kas %d ready", i), func() bool { return httpOK("http://" + k.obsAddr + "/readyz") })
		replicas = append(replicas, k)
	}
	agentKubeconfig, err := cp.KubeconfigFor(controlplane.User{Name: stack.AgentkUser, Token: stack.AgentkToken})
	if err != nil {
		t.Fatal(err)
	}
	// startAgentk returns agentk and its observability address.
	startAgentk := func(name, token string, k *glKas) (*glProc, string) {
		tokenFile := filepath.Join(dir, name+"-token")
		writeTestFile(t, tokenFile, token+"\n")
		obs, err := testutil.FreeAddrs(1)
		if err != nil {
			t.Fatal(err)
		}
		return startProc(t, filepath.Join(binDir, "agentk"), filepath.Join(dir, name+"-agentk.log"),
			"--kas-address", "ws://"+k.agentAddr+"/", "--token-file", tokenFile, "--kubeconfig", agentKubeconfig,
			"--observability-listen", obs[0]), obs[0]
	}
	prodAgent, prodObs := startAgentk("prod", prodToken, replicas[0])
	stagingAgent, _ := startAgentk("staging", stagingToken, replicas[1])
	t.Cleanup(func() {
		if t.Failed() {
			for i, k := range replicas {
				t.Logf("kas %d log:\n%s", i, k.output())
			}
			t.Logf("prod agentk log:\n%s\nstaging agentk log:\n%s", prodAgent.output(), stagingAgent.output())
		}
	})

	// Config and manifests of two projects applied; the third refused.
	admin := cp.KubeconfigPath
	testutil.Eventually(t, 60*time.Second, "cm-a and cm-b applied", func() bool {
		out, _, err := kubectl(t, admin, "", "get", "configmaps", "-n", ns, "-o", "name")
		return err == nil && strings.Contains(out, "configmap/cm-a") && strings.Contains(out, "configmap/cm-b")
	})
	var status struct {
		ID                int64  `json:"id"`
		Name              string `json:"name"`
		ConfigProject     string `json:"config_project"`
		ConnectedSessions int    `json:"connected_sessions"`
		Projects          []struct {
			ID    string `json:"id"`
			Error string `json:"error"`
		} `json:"projects"`
	}
	testutil.Eventually(t, 30*time.Second, "other/secret refused in the status API", func() bool {
		getJSON(t, "http://"+replicas[0].obsAddr+"/api/v1/agents/"+prodID, &status)
		for _, p := range status.Projects {
			if p.ID == "other/secret" && strings.Contains(p.Error, "GitLab does not let agent \"prod\" read it") {
				return true
			}
		}
		return false
	})
	if status.ID != prod.ID || status.Name != "prod" || status.ConfigProject != "group/agents" || status.ConnectedSessions != 1 {
		t.Fatalf("status API: %+v", status)
	}
	if log := replicas[0].output(); !strings.Contains(log, "Manifest project refused") || !strings.Contains(log, "agent_id="+prodID) {
		t.Fatalf("kas log lacks the refusal with the agent id:\n%s", log)
	}
	if out, _, _ := kubectl(t, admin, "", "get", "configmaps", "-n", ns, "-o", "name"); strings.Contains(out, "cm-secret") {
		t.Fatalf("the refused project was applied: %s", out)
	}

	// GitLab hears about the config and the usage.
	testutil.Eventually(t, 30*time.Second, "agent_configuration of both agents", func() bool {
		seen := map[int64]bool{}
		for _, c := range gl.AgentConfigurations() {
			seen[c.AgentID] = true
		}
		return seen[prod.ID] && seen[staging.ID]
	})
	userKubeconfig := filepath.Join(dir, "kubeconfig-alice")
	writeTestFile(t, userKubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kas
  cluster:
    server: https://%s/agents/%s
    certificate-authority: %s
users:
- name: alice
  user:
    token: %s
contexts:
- name: kas
  context: {cluster: kas, user: alice, namespace: %s}
current-context: kas
`, replicas[0].k8sAddr, prodID, caFile, userToken, ns))
	if out := mustKubectl(t, userKubeconfig, "", "get", "configmap", "cm-a", "-o", "jsonpath={.data.value}"); out != "from apps-a" {
		t.Fatalf("kubectl through kas: %q", out)
	}
	testutil.Eventually(t, 30*time.Second, "usage metrics with proxied requests", func() bool {
		for _, u := range gl.Usage() {
			if u.Counters["k8s_api_proxy_request"] > 0 {
				return true
			}
		}
		return false
	})

	// The tracker lists the agents of both replicas, from either replica.
	for i, k := range replicas {
		var agents []int64
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("replica %d to list both agents", i), func() bool {
			agents = nil
			for _, a := range connectedAgents(t, k.apiAddr, gl.Secret, prod.ID, staging.ID) {
				if a.GetAgentMeta().GetVersion() == "" || a.ConnectedAt == nil || a.ConnectionId == 0 {
					t.Fatalf("tracker entry lacks metadata: %v", a)
				}
				agents = append(agents, a.AgentId)
			}
			return len(agents) == 2 && agents[0] != agents[1]
		})
	}

	// GitLab down: the connected agent keeps working, also once the cached
	// agent_info has expired.
	gl.SetDown(true)
	// kas asks GitLab about a connected agent's token when its cached
	// agent_info is due (within info_cache_ttl): once it has asked and
	// been refused, only the cache is left.
	testutil.Eventually(t, ttl+30*time.Second, "kas to ask the downed GitLab for agent_info", func() bool { return gl.Refused(gitlab.PathAgentInfo) > 0 })
	if out := mustKubectl(t, userKubeconfig, "", "get", "configmap", "cm-b", "-o", "jsonpath={.data.value}"); out != "from apps-b" {
		t.Fatalf("kubectl through kas with GitLab down: %q", out)
	}
	getJSON(t, "http://"+replicas[0].obsAddr+"/api/v1/agents/"+prodID, &status)
	if status.ConnectedSessions != 1 {
		t.Fatalf("GitLab down: agent sessions %d, want 1", status.ConnectedSessions)
	}
	gl.SetDown(false)

	// Revoked: the open connection is closed within about info_cache_ttl
	// (kas asks GitLab again about connected agents' tokens), agentk's
	// reconnection is refused, and nothing is pruned.
	gl.RevokeToken(prodToken)
	revokedAt := time.Now()
	testutil.Eventually(t, ttl+30*time.Second, "the revoked token to be refused", func() bool {
		return strings.Contains(prodAgent.output(), "unknown agent token")
	})
	if d := time.Since(revokedAt); d > ttl+15*time.Second {
		t.Fatalf("revoked token refused only after %v", d)
	}
	testutil.Eventually(t, 10*time.Second, "the revoked agent's connection to close", func() bool {
		getJSON(t, "http://"+replicas[0].obsAddr+"/api/v1/agents/"+prodID, &status)
		return status.ConnectedSessions == 0
	})
	if !strings.Contains(replicas[0].output(), "GitLab no longer accepts a token of this agent") {
		t.Fatalf("kas does not say why it closed the agent's connection:\n%s", replicas[0].output())
	}
	// agentk goes on dialling and being refused: whatever it does about a
	// refusal it has done by the next two, and nothing may be pruned.
	refused := func() float64 {
		return metrics.MustScrape(t, "http://"+prodObs+"/metrics").Get("agentk_tunnel_connects_total", "result", "refused")
	}
	before := refused()
	testutil.Eventually(t, 60*time.Second, "agentk to be refused twice more", func() bool { return refused() >= before+2 })
	out := mustKubectl(t, admin, "", "get", "configmaps", "-n", ns, "-o", "name")
	if !strings.Contains(out, "configmap/cm-a") || !strings.Contains(out, "configmap/cm-b") {
		t.Fatalf("objects pruned after the token was revoked: %s", out)
	}
	if gl.JWTFailures() != 0 {
		t.Fatalf("the fake GitLab refused %d JWTs from kas", gl.JWTFailures())
	}
}

// connectedAgents asks a replica's api listener, as GitLab does.
func connectedAgents(t *testing.T, addr string, secret []byte, ids ...int64) []*trackerConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+gitlab.SignJWT(secret, "gitlab.example.com", gitlab.AudienceKas, time.Now()))
	resp, err := trackerrpc.NewAgentTrackerClient(cc).GetConnectedAgentsByAgentIDs(ctx, &trackerrpc.GetConnectedAgentsByAgentIDsRequest{AgentIds: ids})
	if err != nil {
		t.Fatalf("GetConnectedAgentsByAgentIDs: %v", err)
	}
	return resp.Agents
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

type trackerConn = agenttracker.ConnectedAgentInfo

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
