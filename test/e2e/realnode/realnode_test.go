// Package realnode_test runs the product the way users run it: agentk as a
// Pod installed from chart/agentk into a single-node cluster with a real
// kubelet, controller-manager and scheduler (package test/realnode),
// dialing out to kas; GitOps deploying a workload that really runs, and
// kubectl exec, attach, logs -f, port-forward and cp reaching real
// containers through kas.
package realnode_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/stack"
	"kubetunnel/test/realnode"
	"kubetunnel/test/realnode/images"
)

var cluster *realnode.Cluster

func TestMain(m *testing.M) { os.Exit(realnode.Main(m, &cluster, realnode.Options{})) }

const (
	agentkNamespace = realnode.AgentkNamespace
	appsNamespace   = "apps"
	// waitLong bounds waits for pods: image import is local, but a busy
	// 2-core machine starts containers slowly.
	waitLong = 3 * time.Minute
)

const agentConfig = `gitops:
  manifest_projects:
  - id: demo/config
    default_namespace: ` + appsNamespace + `
    paths:
    - glob: '/manifests/**/*.yaml'
    prune: true
    prune_propagation_policy: foreground
user_access:
  access_as:
    agent: {}
`

// web is a Deployment of busybox httpd serving /www, Ready once it
// answers HTTP.
const web = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: ` + images.BusyboxRef + `
        imagePullPolicy: Never
        command: [httpd, -f, -p, "80", -h, /www]
        ports:
        - containerPort: 80
        readinessProbe:
          httpGet: {path: /, port: 80}
          periodSeconds: 1
`

// TestRealNode installs agentk from its chart and exercises every path a
// user takes through kas against real containers. The subtests share one
// kas and one agentk install and run in order.
func TestRealNode(t *testing.T) {
	ctx := t.Context()
	cs := cluster.CP.Clientset()
	dir := t.TempDir()
	s, err := stack.New(ctx, dir, filepath.Dir(cluster.Images.Kas), cluster.CP)
	if err != nil {
		t.Fatal(err)
	}
	// The agent listener must be reachable from pods.
	if err := realnode.ListenKasOnNode(s); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appsNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	configCommit, err := s.Commit("agent config", map[string]string{stack.AgentConfigPath(): agentConfig})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartKas(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.StopKas()
		if t.Failed() {
			t.Logf("kas log:\n%s", tail(s.KasLog(), 60))
		}
	})
	began := time.Now()
	// Re-syncs every 2 s report the workload's health as it changes.
	rel, err := cluster.InstallAgentk(ctx, s, []string{"--gitops-reconcile-period=2s"}, waitLong)
	if err != nil {
		t.Fatalf("%v\n%s", err, podDiagnostics(ctx, agentkNamespace))
	}
	defer rel.Close()
	t.Logf("helm install: agentk Ready in %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agentk pods:\n%s", podDiagnostics(context.Background(), agentkNamespace))
		}
	})

	kc := s.Kubeconfig // through kas, as the user alice
	t.Run("AgentkPodFromChart", func(t *testing.T) {
		pod := agentkPod(t)
		if pod.Spec.ServiceAccountName != "agentk" {
			t.Errorf("service account %q, want agentk (the chart's)", pod.Spec.ServiceAccountName)
		}
		if st := pod.Status.ContainerStatuses; len(st) != 1 || !st[0].Ready || !strings.HasSuffix(st[0].Image, images.AgentkRef) {
			t.Errorf("container status %+v", st)
		}
		// Proxied requests use agentk's in-cluster credentials: its
		// ServiceAccount token, bound by the chart's RBAC.
		out := kubectlOK(t, kc, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if want := "system:serviceaccount:" + agentkNamespace + ":agentk"; out != want {
			t.Errorf("kubectl auth whoami through kas: %q, want %q", out, want)
		}
		waitFor(t, 30*time.Second, "kas to hold agentk's connection with its config", func() (bool, string) {
			st := agentStatus(t, s)
			return st.Connected >= 1 && st.ConfigCommit == configCommit, fmt.Sprintf("%+v", st)
		})
	})

	var webCommit string
	t.Run("GitOpsDeploymentBecomesReady", func(t *testing.T) {
		webCommit, err = s.Commit("web", map[string]string{"manifests/web.yaml": web})
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		waitFor(t, waitLong, "Deployment web available", func() (bool, string) {
			d, err := cs.AppsV1().Deployments(appsNamespace).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return d.Status.AvailableReplicas == 1, fmt.Sprintf("%+v", d.Status)
		})
		t.Logf("web available %s after the commit", time.Since(began).Round(time.Millisecond))
		waitFor(t, time.Minute, "kas to report the sync Healthy", func() (bool, string) {
			r := agentStatus(t, s).sync()
			return r != nil && r.CommitID == webCommit && r.Result == "synced" && r.Health == "Healthy", fmt.Sprintf("%+v", r)
		})
	})
	if t.Failed() {
		return
	}
	webPod := podOf(t, "app=web")

	t.Run("Exec", func(t *testing.T) {
		if out := kubectlOK(t, kc, "", "exec", "-n", appsNamespace, webPod, "--", "cat", "/etc/hostname"); out != webPod {
			t.Errorf("hostname in the container: %q, want %q", out, webPod)
		}
		out := kubectlOK(t, kc, "through the tunnel\n", "exec", "-i", "-n", appsNamespace, webPod, "--", "sh", "-c", "read l; echo got: $l")
		if out != "got: through the tunnel" {
			t.Errorf("exec -i: %q", out)
		}
		// The exit code comes back too.
		_, _, err := kubectl(ctx, kc, "", "exec", "-n", appsNamespace, webPod, "--", "sh", "-c", "exit 3")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 3 {
			t.Errorf("exit 3 in the container: kubectl returned %v", err)
		}
	})

	t.Run("Cp", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "in.txt")
		content := "copied through kas " + randomHex(8) + "\n"
		if err := os.WriteFile(local, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		kubectlOK(t, kc, "", "cp", local, appsNamespace+"/"+webPod+":/tmp/in.txt")
		if out := kubectlOK(t, kc, "", "exec", "-n", appsNamespace, webPod, "--", "cat", "/tmp/in.txt"); out+"\n" != content {
			t.Errorf("file in the container: %q, want %q", out, content)
		}
		back := filepath.Join(t.TempDir(), "back.txt")
		kubectlOK(t, kc, "", "cp", appsNamespace+"/"+webPod+":/tmp/in.txt", back)
		if got, _ := os.ReadFile(back); string(got) != content {
			t.Errorf("copied back: %q, want %q", got, content)
		}
	})

	t.Run("PortForward", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "port-forward", "-n", appsNamespace, "deployment/web", ":80")
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		line, err := bufio.NewReader(stdout).ReadString('\n')
		m := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 80`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("port-forward said %q (%v); stderr %s", line, err, stderr.String())
		}
		for i := range 3 { // several connections over one port-forward
			resp, err := http.Get("http://127.0.0.1:" + m[1] + "/")
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello from busybox httpd\n" {
				t.Errorf("request %d: %s %q", i, resp.Status, body)
			}
		}
	})

	t.Run("LogsFollow", func(t *testing.T) {
		pod := runPod(t, "talker", false, "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done")
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "logs", "-f", "-n", appsNamespace, pod)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		prev := -1
		// Lines keep coming while kubectl follows: the stream is live.
		for n := 0; n < 10; n++ {
			if !sc.Scan() {
				t.Fatalf("logs -f ended after %d lines: %v", n, sc.Err())
			}
			var i int
			if _, err := fmt.Sscanf(sc.Text(), "line %d", &i); err != nil || (prev >= 0 && i != prev+1) {
				t.Fatalf("line %q after line %d", sc.Text(), prev)
			}
			prev = i
		}
	})

	t.Run("Attach", func(t *testing.T) {
		pod := runPod(t, "reader", true, "while read l; do echo got: $l; done")
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "attach", "-i", "-n", appsNamespace, pod)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		for i := range 3 {
			fmt.Fprintf(stdin, "hello %d\n", i)
			// kubectl may print a hint before the stream starts.
			for {
				if !sc.Scan() {
					t.Fatalf("attach ended: %v", sc.Err())
				}
				if strings.HasPrefix(sc.Text(), "got:") {
					break
				}
			}
			if want := fmt.Sprintf("got: hello %d", i); sc.Text() != want {
				t.Fatalf("attach: %q, want %q", sc.Text(), want)
			}
		}
	})

	t.Run("AgentkPodRescheduledDuringWatch", func(t *testing.T) {
		old := agentkPod(t)
		wctx, cancel := context.WithTimeout(ctx, waitLong)
		defer cancel()
		watch := exec.CommandContext(wctx, "kubectl", "--kubeconfig", kc, "get", "configmaps", "-n", appsNamespace, "--watch-only", "-o", "name")
		var wout, werr strings.Builder
		watch.Stdout, watch.Stderr = &wout, &werr
		if err := watch.Start(); err != nil {
			t.Fatal(err)
		}
		// The watch is established once an event reaches it.
		waitFor(t, 30*time.Second, "the watch through kas to see a ConfigMap", func() (bool, string) {
			_, _ = cs.CoreV1().ConfigMaps(appsNamespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-" + randomHex(3)}}, metav1.CreateOptions{})
			return strings.Contains(wout.String(), "configmap/before-"), wout.String()
		})
		// Deleting the pod is what a node drain or an eviction does: the
		// kubelet sends SIGTERM and the Deployment makes a new pod.
		if err := cs.CoreV1().Pods(agentkNamespace).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- watch.Wait() }()
		select {
		case err := <-waited:
			// A draining agentk ends the watch cleanly: kubectl exits 0
			// instead of hanging on a dead tunnel.
			if err != nil {
				t.Errorf("the watch through kas ended with %v: %s", err, werr.String())
			}
		case <-time.After(time.Minute):
			_ = watch.Process.Kill()
			<-waited
			t.Errorf("the watch through kas still running a minute after agentk's pod was deleted")
		}
		waitFor(t, waitLong, "a new agentk pod Ready", func() (bool, string) {
			p, err := readyAgentkPod(ctx)
			return err == nil && p.Name != old.Name, fmt.Sprint(err)
		})
		// Through the new pod: a new watch sees a new object.
		w2 := exec.CommandContext(wctx, "kubectl", "--kubeconfig", kc, "get", "configmaps", "-n", appsNamespace, "--watch-only", "-o", "name")
		var w2out strings.Builder
		w2.Stdout = &w2out
		if err := w2.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = w2.Process.Kill(); _ = w2.Wait() }()
		waitFor(t, time.Minute, "a watch through the new agentk pod", func() (bool, string) {
			_, _ = cs.CoreV1().ConfigMaps(appsNamespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-" + randomHex(3)}}, metav1.CreateOptions{})
			return strings.Contains(w2out.String(), "configmap/after-"), w2out.String()
		})
	})

	t.Run("AgentkKilledDuringWatch", func(t *testing.T) {
		pod := agentkPod(t)
		st := pod.Status.ContainerStatuses[0]
		wctx, cancel := context.WithTimeout(ctx, waitLong)
		defer cancel()
		watch := exec.CommandContext(wctx, "kubectl", "--kubeconfig", kc, "get", "configmaps", "-n", appsNamespace, "--watch-only", "-o", "name")
		var wout, werr strings.Builder
		watch.Stdout, watch.Stderr = &wout, &werr
		if err := watch.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the watch through kas to see a ConfigMap", func() (bool, string) {
			_, _ = cs.CoreV1().ConfigMaps(appsNamespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "crash-" + randomHex(3)}}, metav1.CreateOptions{})
			return strings.Contains(wout.String(), "configmap/crash-"), wout.String()
		})
		// kill -9, as an OOM kill or a crash: no drain, no goodbye.
		pids, err := cluster.ContainerPIDs(st.ContainerID)
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		waited := make(chan error, 1)
		go func() { waited <- watch.Wait() }()
		select {
		case err := <-waited:
			// The connection died with the process: the watch ends (kubectl
			// may report the broken stream) rather than hang.
			t.Logf("the watch ended after agentk was killed: %v %s", err, strings.TrimSpace(werr.String()))
		case <-time.After(time.Minute):
			_ = watch.Process.Kill()
			<-waited
			t.Errorf("the watch through kas still running a minute after agentk was killed")
		}
		waitFor(t, waitLong, "the kubelet to restart agentk and agentk to reconnect", func() (bool, string) {
			p, err := readyAgentkPod(ctx)
			if err != nil {
				return false, err.Error()
			}
			c := p.Status.ContainerStatuses[0]
			return p.Name == pod.Name && c.RestartCount > st.RestartCount, fmt.Sprintf("restarts %d", c.RestartCount)
		})
		if out := kubectlOK(t, kc, "", "get", "pod", "-n", agentkNamespace, pod.Name, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"); out != fmt.Sprint(st.RestartCount+1) {
			t.Errorf("restart count through kas: %s, want %d", out, st.RestartCount+1)
		}
	})

	t.Run("ForegroundPruneCompletes", func(t *testing.T) {
		d, err := cs.AppsV1().Deployments(appsNamespace).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("git", "-C", s.RepoDir, "rm", "-q", "manifests/web.yaml").CombinedOutput(); err != nil {
			t.Fatalf("git rm: %v %s", err, out)
		}
		// Another object stays, so the commit still selects a file (an
		// empty selection prunes nothing unless allow_empty is set).
		if _, err := s.Commit("remove web", map[string]string{"manifests/keep.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\ndata: {a: b}\n"}); err != nil {
			t.Fatal(err)
		}
		sawForeground := false
		began := time.Now()
		// Foreground deletion finishes only once the garbage collector has
		// deleted the ReplicaSet and its pods.
		waitFor(t, waitLong, "Deployment web and its pods gone", func() (bool, string) {
			cur, err := cs.AppsV1().Deployments(appsNamespace).Get(ctx, "web", metav1.GetOptions{})
			if err == nil {
				for _, f := range cur.Finalizers {
					sawForeground = sawForeground || f == metav1.FinalizerDeleteDependents
				}
				return false, fmt.Sprintf("deployment still there (deleting since %v, finalizers %v)", cur.DeletionTimestamp, cur.Finalizers)
			}
			if !apierrors.IsNotFound(err) {
				return false, err.Error()
			}
			pods, err := cs.CoreV1().Pods(appsNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil || len(pods.Items) > 0 {
				return false, fmt.Sprintf("pods left: %d %v", len(pods.Items), err)
			}
			return true, ""
		})
		t.Logf("prune completed in %s (foreground finalizer seen: %v)", time.Since(began).Round(time.Millisecond), sawForeground)
		rs, _ := cs.AppsV1().ReplicaSets(appsNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if len(rs.Items) > 0 {
			t.Errorf("ReplicaSets of the pruned Deployment %s left: %d", d.Name, len(rs.Items))
		}
		// A foreground deletion is reported as a pending prune while the
		// garbage collector works (agentk does not wait for it), then no
		// longer: kas shows the new commit synced with nothing pending.
		waitFor(t, time.Minute, "kas to report the prune done", func() (bool, string) {
			st := agentStatus(t, s)
			r := st.sync()
			pending := -1
			for _, p := range st.Projects {
				if p.ID == stack.ConfigProject {
					pending = len(p.PendingPrunes)
				}
			}
			return r != nil && r.CommitID != webCommit && r.Result == "synced" && pending == 0, fmt.Sprintf("%+v, pending prunes %d", r, pending)
		})
	})
}

// agentState is kas's view of the agent (/api/v1/agents/<name>).
type agentState struct {
	Connected    int    `json:"connected_sessions"`
	ConfigCommit string `json:"config_commit"`
	Projects     []struct {
		ID            string      `json:"id"`
		LastSync      *syncReport `json:"last_sync"`
		PendingPrunes []struct {
			Object string `json:"object"`
		} `json:"pending_prunes"`
	} `json:"projects"`
}

type syncReport struct {
	CommitID string `json:"commit_id"`
	Result   string `json:"result"`
	Reason   string `json:"reason"`
	Pruned   int    `json:"pruned"`
	Health   string `json:"health"`
}

func (a *agentState) sync() *syncReport {
	for _, p := range a.Projects {
		if p.ID == stack.ConfigProject {
			return p.LastSync
		}
	}
	return nil
}

func agentStatus(t *testing.T, s *stack.Stack) *agentState {
	t.Helper()
	resp, err := http.Get("http://" + s.ObsAddr + "/api/v1/agents/" + stack.AgentName)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st agentState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func agentkPod(t *testing.T) *corev1.Pod {
	t.Helper()
	p, err := readyAgentkPod(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readyAgentkPod returns the one Ready agentk pod not being deleted.
func readyAgentkPod(ctx context.Context) (*corev1.Pod, error) {
	pods, err := cluster.CP.Clientset().CoreV1().Pods(agentkNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=agentk"})
	if err != nil {
		return nil, err
	}
	var ready []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = append(ready, p)
			}
		}
	}
	if len(ready) != 1 {
		return nil, fmt.Errorf("%d Ready agentk pods of %d", len(ready), len(pods.Items))
	}
	return ready[0], nil
}

// podOf returns the name of the one running pod matching selector in the
// apps namespace.
func podOf(t *testing.T, selector string) string {
	t.Helper()
	pods, err := cluster.CP.Clientset().CoreV1().Pods(appsNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods %s: %v %v", selector, pods, err)
	}
	return pods.Items[0].Name
}

// runPod runs a busybox shell script as a bare pod (admin credentials, not
// through kas) and waits until it runs; the test deletes it at the end.
func runPod(t *testing.T, name string, stdin bool, script string) string {
	t.Helper()
	ctx := t.Context()
	pods := cluster.CP.Clientset().CoreV1().Pods(appsNamespace)
	zero := int64(0)
	_, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name: "main", Image: images.BusyboxRef, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", script}, Stdin: stdin,
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pods.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	waitFor(t, waitLong, "pod "+name+" running", func() (bool, string) {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodRunning, fmt.Sprintf("%s %+v", p.Status.Phase, p.Status.ContainerStatuses)
	})
	return name
}

func kubectl(ctx context.Context, kubeconfig, stdin string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return strings.TrimSpace(stdout.String()), stderr.String(), err
}

func kubectlOK(t *testing.T, kubeconfig, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := kubectl(t.Context(), kubeconfig, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// waitFor polls cond, which reports the state it saw, every 200ms (each
// check asks the API server or kas).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testutil.Poll(t, 200*time.Millisecond, timeout, what, func() error {
		if ok, state := cond(); !ok {
			return fmt.Errorf("last: %s", state)
		}
		return nil
	})
}

// podDiagnostics lists a namespace's pods with their status and events,
// for a failed test.
func podDiagnostics(ctx context.Context, ns string) string {
	cs := cluster.CP.Clientset()
	var b strings.Builder
	pods, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if pods != nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s: %s %+v\n", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
		}
	}
	ev, _ := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if ev != nil {
		for _, e := range ev.Items {
			fmt.Fprintf(&b, "event %s %s: %s\n", e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	deps, _ := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if deps != nil {
		for _, d := range deps.Items {
			fmt.Fprintf(&b, "deployment %s: %+v\n", d.Name, d.Status)
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
