package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/internal/testutil/stack"
)

// kas reloads its config file without a restart: agents and users added
// by SIGHUP or by rewriting the file take effect, a watch through an agent
// that stays keeps streaming over the same connection, a removed agent is
// disconnected and refused, and a broken file keeps the running config
// with the bad key in the log.
func TestLiveReload(t *testing.T) {
	setup(t)
	ctx := t.Context()
	dir := t.TempDir()
	s, err := stack.New(ctx, dir, binDir, cp)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t)
	// Agent A is the stack's (demo); B and C share its config project.
	tokenB, tokenC, carolToken := "b-"+randHex(t), "c-"+randHex(t), "carol-"+randHex(t)
	base := readTestFile(t, s.KasConfig)
	// agentsAndUsers rewrites the stack's agents[] and users[]: extra
	// agents after demo, alice's agents, extra users after alice.
	agentsAndUsers := func(extraAgents, aliceAgents, extraUsers string) string {
		cfg := strings.Replace(base, "\nusers:\n", "\n"+extraAgents+"users:\n", 1)
		cfg = strings.Replace(cfg, "agents: ["+stack.AgentName+"]", "agents: ["+aliceAgents+"]", 1)
		return cfg + extraUsers
	}
	agentEntry := func(name, token string) string {
		return "  - name: " + name + "\n    config_project: " + stack.ConfigProject + "\n    token_sha256: [\"" + sha256hex(token) + "\"]\n"
	}
	writeTestFile(t, s.KasConfig, agentsAndUsers(agentEntry("b", tokenB), "demo, b", ""))

	kas := startProc(t, filepath.Join(binDir, "kas"), filepath.Join(dir, "kas.log"), "--config", s.KasConfig, "--config-poll-period", "500ms")
	testutil.Eventually(t, 30*time.Second, "kas ready", func() bool { return httpOK("http://" + s.ObsAddr + "/readyz") })
	agentKubeconfig, err := cp.KubeconfigFor(controlplane.User{Name: stack.AgentkUser, Token: stack.AgentkToken})
	if err != nil {
		t.Fatal(err)
	}
	startAgentk := func(name, token string) *glProc {
		tokenFile := filepath.Join(dir, name+"-token")
		writeTestFile(t, tokenFile, token+"\n")
		obs, err := testutil.FreeAddrs(1)
		if err != nil {
			t.Fatal(err)
		}
		return startProc(t, filepath.Join(binDir, "agentk"), filepath.Join(dir, name+"-agentk.log"),
			"--kas-address", "ws://"+s.AgentAddr+"/", "--token-file", tokenFile, "--kubeconfig", agentKubeconfig,
			"--observability-listen", obs[0])
	}
	kubeconfigFor := func(agent, user, token string) string {
		tokenFile := filepath.Join(dir, user+"-token")
		writeTestFile(t, tokenFile, token+"\n")
		out, err := exec.CommandContext(ctx, filepath.Join(binDir, "kas"), "kubeconfig", "--config", s.KasConfig,
			"--agent", agent, "--user", user, "--token-file", tokenFile, "--ca-file", s.CAFile).Output()
		if err != nil {
			t.Fatalf("kas kubeconfig --agent %s --user %s: %v", agent, user, err)
		}
		path := filepath.Join(dir, "kubeconfig-"+agent+"-"+user)
		writeTestFile(t, path, string(out))
		return path
	}
	agentA := startAgentk("a", strings.TrimSpace(readTestFile(t, filepath.Join(dir, "agent-token"))))
	agentB := startAgentk("b", tokenB)
	var agentC *glProc
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kas log:\n%s\nagentk A log:\n%s\nagentk B log:\n%s", kas.output(), agentA.output(), agentB.output())
			if agentC != nil {
				t.Logf("agentk C log:\n%s", agentC.output())
			}
		}
	})
	kcA := s.Kubeconfig
	kcB := kubeconfigFor("b", stack.User, s.UserToken)
	reachable := func(kc string) bool {
		_, _, err := kubectl(t, kc, "", "get", "configmaps", "-n", ns)
		return err == nil
	}
	testutil.Eventually(t, 30*time.Second, "kubectl through A and B", func() bool { return reachable(kcA) && reachable(kcB) })

	// A watch through A, established before the reloads.
	watch := startWatch(t, kcA, ns)
	watch.expect(t, "before-reload")

	// SIGHUP: C and carol added, B removed (and from alice's agents).
	writeTestFile(t, s.KasConfig, agentsAndUsers(agentEntry("c", tokenC), "demo",
		"  - name: carol\n    token_sha256: [\""+sha256hex(carolToken)+"\"]\n    agents: [demo, c]\n"))
	// kas kubeconfig checks the agent and user names in the file.
	kcC := kubeconfigFor("c", "carol", carolToken)
	hupAt := time.Now()
	if err := kas.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the reload", func() bool { return strings.Contains(kas.output(), `msg="Config reloaded"`) })
	t.Logf("SIGHUP → config reloaded (seen in the log): %v", time.Since(hupAt).Round(time.Millisecond))
	agentC = startAgentk("c", tokenC)
	testutil.Eventually(t, 30*time.Second, "kubectl through C as carol", func() bool { return reachable(kcC) })
	testutil.Eventually(t, 15*time.Second, "B's session to close", func() bool {
		return regexp.MustCompile(`msg="Closing agent connection" agent=b .*reason="a config reload removed this agent from agents\[\]"`).MatchString(kas.output())
	})
	_, errOut, err := kubectl(t, kcB, "", "get", "configmaps", "-n", ns)
	if err == nil || !strings.Contains(errOut, "Error from server") {
		t.Errorf("kubectl through the removed agent B: err %v, stderr %q; want refused", err, errOut)
	}
	testutil.Eventually(t, 15*time.Second, "B's agentk to be refused", func() bool {
		return strings.Contains(agentB.output(), "unknown agent token")
	})
	watch.expect(t, "after-sighup")

	// Only the file rewritten (no signal): dave added; the poll applies it.
	daveToken := "dave-" + randHex(t)
	withDave := agentsAndUsers(agentEntry("c", tokenC), "demo",
		"  - name: carol\n    token_sha256: [\""+sha256hex(carolToken)+"\"]\n    agents: [demo, c]\n"+
			"  - name: dave\n    token_sha256: [\""+sha256hex(daveToken)+"\"]\n    agents: [demo]\n")
	writeTestFile(t, s.KasConfig, withDave)
	writtenAt := time.Now()
	kcDave := kubeconfigFor("demo", "dave", daveToken)
	testutil.Eventually(t, 15*time.Second, "kubectl through A as dave", func() bool { return reachable(kcDave) })
	t.Logf("file rewritten → dave's kubectl works (--config-poll-period 500ms): %v", time.Since(writtenAt).Round(time.Millisecond))
	watch.expect(t, "after-file-change")

	// A broken file: the running config stays, the log names the key.
	writeTestFile(t, s.KasConfig, strings.Replace(withDave, sha256hex(daveToken), "not-a-sha256", 1))
	testutil.Eventually(t, 15*time.Second, "the failed reload", func() bool {
		return regexp.MustCompile(`level=ERROR msg="Config reload failed: the running config stays in effect" file=\S+ err=.* key=users\[2\]\.token_sha256\[0\]`).MatchString(kas.output())
	})
	if !reachable(kcDave) || !reachable(kcC) {
		t.Error("the running config did not stay in effect under a broken file")
	}
	m := metrics.MustScrape(t, "http://"+s.ObsAddr+"/metrics")
	if failures, ok := m.Value("kas_config_reload_total", "result", "failure"); !ok || failures != 1 {
		t.Errorf(`kas_config_reload_total{result="failure"} = %v (present %v), want 1`, failures, ok)
	}
	if v, ok := m.Value("kas_config_last_reload_successful"); !ok || v != 0 {
		t.Errorf("kas_config_last_reload_successful = %v (present %v), want 0", v, ok)
	}
	watch.expect(t, "after-broken-file")

	// A never reconnected: one session from start to end.
	if n := strings.Count(kas.output(), `msg="Agent connected" agent=demo `); n != 1 {
		t.Errorf("agent A connected %d times, want once (no reconnect on reload)", n)
	}
	watch.stop()
}

// kubectlWatch is a running `kubectl get --watch-only`.
type kubectlWatch struct {
	ns     string
	lines  chan string
	cancel func()
	done   chan struct{}
	stderr *strings.Builder
}

func startWatch(t *testing.T, kubeconfig, ns string) *kubectlWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "kubectl", kubectlArgs(kubeconfig, "get", "configmaps", "-n", ns, "--watch-only", "-o", "name", "-v=6")...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &kubectlWatch{ns: ns, lines: make(chan string, 100), cancel: cancel, done: make(chan struct{}), stderr: &strings.Builder{}}
	established := make(chan struct{})
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			w.stderr.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "watch=true") && strings.Contains(sc.Text(), "200 OK") {
				once = true
				close(established)
			}
		}
	}()
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		<-stderrDone
		cmd.Wait()
		close(w.lines)
	}()
	t.Cleanup(w.stop)
	select {
	case <-established:
	case <-time.After(15 * time.Second):
		t.Fatalf("the watch was not established:\n%s", w.stderr)
	}
	return w
}

func (w *kubectlWatch) stop() {
	w.cancel()
	<-w.done
}

// expect creates a ConfigMap and fails unless the watch prints it.
func (w *kubectlWatch) expect(t *testing.T, name string) {
	t.Helper()
	if _, err := cp.Clientset().CoreV1().ConfigMaps(w.ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case l, ok := <-w.lines:
		if !ok {
			t.Fatalf("the watch ended before %s:\n%s", name, w.stderr)
		}
		if l != "configmap/"+name {
			t.Fatalf("watch printed %q, want configmap/%s", l, name)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no watch event for %s", name)
	}
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b)) + "\n"
}

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
