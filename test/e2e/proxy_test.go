package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil"
)

// kubectl through kas: get, apply, delete, a 5 MB list and large bodies.
func TestKubectlThroughKas(t *testing.T) {
	s := newStack(t, "")
	ns := namespace(t)
	kc := s.Kubeconfig

	manifest := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: %s\ndata:\n  greeting: hi\n", ns)
	if out := mustKubectl(t, kc, manifest, "apply", "-f", "-"); !strings.Contains(out, "configmap/hello created") {
		t.Errorf("apply: %s", out)
	}
	if out := mustKubectl(t, kc, "", "get", "configmap", "hello", "-n", ns, "-o", "jsonpath={.data.greeting}"); out != "hi" {
		t.Errorf("get: %q", out)
	}
	// The object really is in the cluster.
	if _, err := cp.Clientset().CoreV1().ConfigMaps(ns).Get(t.Context(), "hello", metav1.GetOptions{}); err != nil {
		t.Errorf("not in the cluster: %v", err)
	}
	mustKubectl(t, kc, "", "patch", "configmap", "hello", "-n", ns, "--type=merge", "-p", `{"data":{"greeting":"hello"}}`)
	if out := mustKubectl(t, kc, "", "get", "configmap", "hello", "-n", ns, "-o", "jsonpath={.data.greeting}"); out != "hello" {
		t.Errorf("after patch: %q", out)
	}
	if out := mustKubectl(t, kc, "", "delete", "configmap", "hello", "-n", ns); !strings.Contains(out, "deleted") {
		t.Errorf("delete: %s", out)
	}

	// Large request bodies (1 MB each, applied through kas), then a list of
	// over 5 MB back.
	big := strings.Repeat("x", 1<<20)
	for i := range 6 {
		m := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-%d\n  namespace: %s\ndata:\n  blob: %s\n", i, ns, big)
		mustKubectl(t, kc, m, "apply", "--server-side", "-f", "-")
	}
	out := mustKubectl(t, kc, "", "get", "configmaps", "-n", ns, "-o", "json")
	if len(out) < 6<<20 || strings.Count(out, big) != 6 {
		t.Errorf("list of %d bytes, want the six 1 MB objects whole", len(out))
	}
	// The kas audit log names the user, agent, verb and path, never the token.
	line := `msg="Proxied request" user=alice agent=demo verb=delete path=/api/v1/namespaces/` + ns + `/configmaps/hello status=200`
	if log, ok := s.WaitKasLog(line); !ok {
		t.Errorf("no audit line for the delete:\n%s", log)
	} else if strings.Contains(log, s.UserToken) {
		t.Error("kas logged the user's token")
	}
}

// A watch through kas sees a change within a second, and survives a 30 s
// idle period.
func TestKubectlWatch(t *testing.T) {
	s := newStack(t, "")
	ns := namespace(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// -v=6 makes kubectl log each response's status line: "watch=true 200
	// OK" says the watch is established, so no event can be missed.
	cmd := exec.CommandContext(ctx, "kubectl", kubectlArgs(s.Kubeconfig, "get", "configmaps", "-n", ns, "--watch-only", "-o", "name", "-v=6")...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderrLog strings.Builder
	established := make(chan struct{})
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			stderrLog.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "watch=true") && strings.Contains(sc.Text(), "200 OK") {
				once = true
				close(established)
			}
		}
	}()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	defer func() {
		cancel()
		<-stderrDone
		cmd.Wait()
		if t.Failed() {
			t.Logf("kubectl stderr:\n%s", stderrLog.String())
		}
	}()
	select {
	case <-established:
	case <-time.After(15 * time.Second):
		t.Fatal("the watch was not established")
	}
	expect := func(name string) {
		t.Helper()
		start := time.Now()
		if _, err := cp.Clientset().CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		select {
		case l := <-lines:
			if l != "configmap/"+name {
				t.Fatalf("watch printed %q", l)
			}
			d := time.Since(start)
			if d > time.Second {
				t.Errorf("event after %v, want within 1s", d)
			}
			t.Logf("%s: event through kas after %v", name, d.Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Fatalf("no watch event for %s", name)
		}
	}
	expect("first")
	// Not a wait for an event: the idle period is what is tested, on the
	// real binaries, whose timers (keepalives, deadlines) only real time
	// reaches.
	time.Sleep(31 * time.Second)
	expect("after-idle")
}

// The identity a caller cannot choose, and the answers for bad tokens and
// agents the caller may not use.
func TestKubectlRefusals(t *testing.T) {
	s := newStack(t, "")
	_, errOut, err := kubectl(t, s.Kubeconfig, "", "--as", "system:admin", "get", "pods")
	if err == nil || !strings.Contains(errOut, "Impersonate-User is not allowed through kas") {
		t.Errorf("--as: %v %s", err, errOut)
	}
	_, errOut, err = kubectl(t, s.Kubeconfig, "", "--token", "not-a-token", "get", "pods")
	if err == nil || !strings.Contains(errOut, "Unauthorized") {
		t.Errorf("bad token: %v %s", err, errOut)
	}
	_, errOut, err = kubectl(t, s.Kubeconfig, "", "--server", "https://"+s.APIAddr+"/agents/other", "get", "pods")
	if err == nil || !strings.Contains(errOut, `user "alice" may not use agent "other"`) {
		t.Errorf("other agent: %v %s", err, errOut)
	}
}

// access_as: user makes the API server see alice, with RBAC applied to her.
func TestKubectlAccessAsUser(t *testing.T) {
	s := newStack(t, "user_access:\n  access_as:\n    user: {}\n")
	_, errOut, err := kubectl(t, s.Kubeconfig, "", "get", "pods", "-n", "default")
	if err == nil || !strings.Contains(errOut, `User "alice" cannot list resource "pods"`) {
		t.Fatalf("want alice's own RBAC to apply: %v %s", err, errOut)
	}
	if out := mustKubectl(t, s.Kubeconfig, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"); !strings.Contains(out, "alice") || !strings.Contains(out, "developers") {
		t.Errorf("whoami: %s", out)
	}
}

// An agent that is not connected is a fast 503 that says so, and requests
// work again once it reconnects.
func TestAgentDisconnected(t *testing.T) {
	s := newStack(t, "")
	if err := s.StopAgentk(); err != nil {
		t.Fatal(err)
	}
	var errOut string
	testutil.Eventually(t, 10*time.Second, "kubectl to say the agent is not connected", func() bool {
		_, errOut, _ = kubectl(t, s.Kubeconfig, "", "get", "ns", "default")
		return strings.Contains(errOut, `agent 'demo' is not connected to kas`)
	})
	t.Logf("kubectl says:\n%s", errOut)
	start := time.Now()
	_, errOut, _ = kubectl(t, s.Kubeconfig, "", "get", "ns", "default", "--request-timeout=5s")
	if d := time.Since(start); d > 3*time.Second || !strings.Contains(errOut, "ServiceUnavailable") && !strings.Contains(errOut, "not connected") {
		t.Errorf("took %v: %s", d, errOut)
	}
	if err := s.StartAgentk(t.Context()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "requests to work again", func() bool {
		_, _, err := kubectl(t, s.Kubeconfig, "", "get", "ns", "default")
		return err == nil
	})
}

// kas restarts while kubectl watches: the watch ends cleanly, and after
// kas is back the agent reconnects and requests work.
func TestKasRestartDuringWatch(t *testing.T) {
	s := newStack(t, "")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	done, _ := watchKubectl(t, ctx, s.Kubeconfig, "namespaces")
	if err := s.StopKas(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("kubectl watch ended with %v, want a clean exit", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("kubectl watch did not end when kas stopped")
	}
	if err := s.StartKas(t.Context()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "requests through the restarted kas", func() bool {
		_, _, err := kubectl(t, s.Kubeconfig, "", "get", "ns", "default")
		return err == nil
	})
}

// agentk stops (SIGTERM, as in a rolling update) while kubectl watches
// through it: agentk ends the watch cleanly and exits at once instead of
// waiting out --drain-timeout, and kubectl's watch exits 0.
func TestAgentkStopDuringWatch(t *testing.T) {
	s := newStack(t, "")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	done, stderr := watchKubectl(t, ctx, s.Kubeconfig, "namespaces")
	start := time.Now()
	if err := s.StopAgentk(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("agentk took %v to stop with only a watch in flight (its watches should end at once)", d)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("kubectl watch ended with %v (%s), want a clean exit", err, stderr())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("kubectl watch did not end when agentk stopped")
	}
	if log, ok := s.WaitAgentLog("Stop signal received: draining"); !ok {
		t.Errorf("agentk did not log its drain:\n%s", log)
	}
}

// kas is killed (SIGKILL: no GoAway, no drain) and restarted five times in
// a row; each time agentk comes back and kubectl works through it.
func TestKasKilledFiveTimes(t *testing.T) {
	s := newStack(t, "")
	for i := range 5 {
		if err := s.KillKas(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := s.StartKas(t.Context()); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "kubectl through the restarted kas", func() bool {
			_, _, err := kubectl(t, s.Kubeconfig, "", "get", "ns", "default", "--request-timeout=2s")
			return err == nil
		})
		t.Logf("kill %d: back in %v", i+1, time.Since(start).Round(time.Millisecond))
	}
	testutil.Eventually(t, 10*time.Second, "agentk's log to say it connected 6 times", func() bool {
		return strings.Count(s.AgentLog(), "Connected to kas") >= 6
	})
}

// watchKubectl starts kubectl get --watch-only on resource and returns
// once kubectl has logged its watch's "200 OK" (-v=6): the watch is
// established through kas and agentk. done receives kubectl's exit;
// stderr is its log so far.
func watchKubectl(t *testing.T, ctx context.Context, kubeconfig, resource string) (done <-chan error, stderr func() string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "kubectl", kubectlArgs(kubeconfig, "get", resource, "--watch-only", "-v=6")...)
	log := &watchLog{established: make(chan struct{})}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-log.established:
	case err := <-exited:
		t.Fatalf("kubectl watch exited before its watch was established: %v\n%s", err, log)
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl's watch not established after 30s:\n%s", log)
	}
	return exited, log.String
}

// watchLog collects kubectl's -v=6 log and closes established at the
// watch request's "200 OK".
type watchLog struct {
	mu          sync.Mutex // guards buf and closed
	buf         strings.Builder
	closed      bool
	established chan struct{}
}

func (l *watchLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.closed {
		for _, line := range strings.Split(l.buf.String(), "\n") {
			if strings.Contains(line, "watch=true") && strings.Contains(line, "200 OK") {
				l.closed = true
				close(l.established)
				break
			}
		}
	}
	return len(p), nil
}

func (l *watchLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
