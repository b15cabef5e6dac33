package kubelet_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/test/e2e/kubelet"
)

var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	// LocalOnly: kube-apiserver must be able to dial the stand-in kubelet
	// on this machine's loopback, which a kind cluster's cannot.
	os.Exit(controlplane.Main(m, &cp, controlplane.Options{LocalOnly: true}))
}

const podName = "app"

// setup starts a stand-in kubelet with its own node and a running pod in a
// fresh namespace, and returns the kubelet and the namespace.
func setup(t *testing.T) (*kubelet.Kubelet, string) {
	t.Helper()
	ctx := t.Context()
	k, err := kubelet.Start(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// By now every kubectl has exited or been killed. Each session must
		// end because its client went away, not only when Close forces it.
		waitIdle(t, k)
		if err := k.Close(); err != nil {
			t.Errorf("close kubelet: %v", err)
		}
	})
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	if err := k.RegisterNode(ctx, cp.Clientset(), "node-"+ns); err != nil {
		t.Fatal(err)
	}
	if err := k.CreatePod(ctx, cp.Clientset(), ns, podName); err != nil {
		t.Fatal(err)
	}
	return k, ns
}

// kubectl runs the real kubectl as admin and returns stdout, stderr and
// the error of the run.
func kubectl(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := kubectlCmd(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("kubectl %s: err=%v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	return stdout.String(), stderr.String(), err
}

func kubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", cp.KubeconfigPath}, args...)...)
}

func TestExec(t *testing.T) {
	t.Parallel()
	_, ns := setup(t)
	stdout, _, err := kubectl(t, "", "exec", "-n", ns, podName, "--", "echo", "hi")
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "hi\n" {
		t.Fatalf("stdout = %q, want %q", stdout, "hi\n")
	}
}

func TestExecStdin(t *testing.T) {
	t.Parallel()
	_, ns := setup(t)
	const input = "hello\nthrough the tunnel\n"
	stdout, _, err := kubectl(t, input, "exec", "-i", "-n", ns, podName, "--", "cat")
	if err != nil {
		t.Fatal(err)
	}
	if stdout != input {
		t.Fatalf("stdout = %q, want %q", stdout, input)
	}
}

func TestExecExitCodeAndStderr(t *testing.T) {
	t.Parallel()
	_, ns := setup(t)
	stdout, stderr, err := kubectl(t, "", "exec", "-n", ns, podName, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Fatalf("err = %v, want exit status 3", err)
	}
	if stdout != "out\n" || !strings.Contains(stderr, "err\n") {
		t.Fatalf("stdout = %q, stderr = %q; want out and err", stdout, stderr)
	}
}

// TestExecClientGone kills kubectl while the exec'd command is still
// running silently; the command must be killed and the session end.
func TestExecClientGone(t *testing.T) {
	t.Parallel()
	_, ns := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	lines := startAndScan(t, kubectlCmd(ctx, "exec", "-n", ns, podName, "--", "sh", "-c", "echo started; exec sleep 60"))
	if got := nextLine(t, lines); got != "started" {
		t.Fatalf("line = %q, want started", got)
	}
}

func TestAttach(t *testing.T) {
	t.Parallel()
	_, ns := setup(t)
	stdout, _, err := kubectl(t, "ping\n", "attach", "-i", "-n", ns, podName)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s%s_%s/%s\nping\n", kubelet.AttachGreeting, podName, ns, kubelet.ContainerName)
	if stdout != want {
		t.Fatalf("stdout = %q, want %q", stdout, want)
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	k, ns := setup(t)
	k.SetLogs([]string{"first", "second", "third"}, time.Second)
	stdout, _, err := kubectl(t, "", "logs", "-n", ns, podName, "--tail=2")
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "second\nthird\n" {
		t.Fatalf("stdout = %q, want the last two lines", stdout)
	}
}

func TestLogsFollow(t *testing.T) {
	t.Parallel()
	k, ns := setup(t)
	k.SetLogs([]string{"first"}, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	lines := startAndScan(t, kubectlCmd(ctx, "logs", "-f", "-n", ns, podName))
	want := []string{"first", kubelet.FollowLinePrefix + "1", kubelet.FollowLinePrefix + "2", kubelet.FollowLinePrefix + "3"}
	for _, w := range want {
		if got := nextLine(t, lines); got != w {
			t.Fatalf("line = %q, want %q", got, w)
		}
	}
	// Killing kubectl at the end of the test must end the follow loop;
	// setup's cleanup checks that.
}

func TestPortForward(t *testing.T) {
	t.Parallel()
	k, ns := setup(t)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the target, path %s", r.URL.Path)
	}))
	defer target.Close()
	k.SetPortForward(8080, target.Listener.Addr().String())

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// ":8080" lets kubectl choose a free local port, which it reports.
	lines := startAndScan(t, kubectlCmd(ctx, "port-forward", "-n", ns, "pod/"+podName, "--address=127.0.0.1", ":8080"))
	local := regexp.MustCompile(`^Forwarding from (127\.0\.0\.1:\d+) -> 8080$`).FindStringSubmatch(nextLine(t, lines))
	if local == nil {
		t.Fatal("kubectl port-forward did not report its local address")
	}
	// No keep-alive: every request opens a new forwarded stream, and no
	// idle connection outlives the test.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, path := range []string{"/one", "/two"} {
		resp, err := client.Get("http://" + local[1] + path)
		if err != nil {
			t.Fatalf("GET %s through port-forward: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := "hello from the target, path " + path; string(body) != want {
			t.Fatalf("body = %q, want %q", body, want)
		}
	}
}

// TestPortForwardClientGone kills kubectl while a forwarded connection to a
// target that does not hang up is open; the session must still end.
func TestPortForwardClientGone(t *testing.T) {
	t.Parallel()
	// The echo target keeps each connection open even after end of input,
	// until release is closed: after setup's cleanup, which registered
	// later, runs earlier and checks the session ended.
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				<-release
			}()
		}
	}()
	k, ns := setup(t)
	k.SetPortForward(7000, echo.Addr().String())

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// Registered before startAndScan, so it runs after kubectl is killed:
	// the connection is still open when the client goes away.
	var conn net.Conn
	t.Cleanup(func() {
		if conn != nil {
			conn.Close()
		}
	})
	lines := startAndScan(t, kubectlCmd(ctx, "port-forward", "-n", ns, "pod/"+podName, "--address=127.0.0.1", ":7000"))
	local := regexp.MustCompile(`^Forwarding from (127\.0\.0\.1:\d+) -> 7000$`).FindStringSubmatch(nextLine(t, lines))
	if local == nil {
		t.Fatal("kubectl port-forward did not report its local address")
	}
	if conn, err = net.DialTimeout("tcp", local[1], 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || got != "ping\n" {
		t.Fatalf("echo through port-forward = %q, %v; want ping", got, err)
	}
}

// startAndScan starts cmd and returns a channel of its stdout lines. The
// command is killed and reaped when the test ends.
func startAndScan(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			select {
			case lines <- s.Text():
			case <-t.Context().Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		if stderr.Len() > 0 {
			t.Logf("kubectl %s stderr: %s", strings.Join(cmd.Args[1:], " "), stderr.String())
		}
	})
	return lines
}

func waitIdle(t *testing.T, k *kubelet.Kubelet) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for k.Active() > 0 {
		if time.Now().After(deadline) {
			t.Errorf("%d stand-in kubelet sessions still running 10s after their clients ended", k.Active())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("command ended early")
		}
		return l
	case <-time.After(15 * time.Second):
		t.Fatal("timed out waiting for output")
	}
	return ""
}

// A pod created by someone else, with no node, is adopted: bound to the
// kubelet's node and running, so kubectl exec reaches it.
func TestAdopt(t *testing.T) {
	t.Parallel()
	_, ns := setup(t)
	pods := cp.Clientset().CoreV1().Pods(ns)
	if _, err := pods.Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "other"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.36", Command: []string{"sleep", "1000"}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k, err := kubelet.Start(t.Context(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := k.Adopt(t.Context(), cp.Clientset(), ns, "other"); err == nil {
		t.Fatal("Adopt without a registered node succeeded")
	}
	if err := k.RegisterNode(t.Context(), cp.Clientset(), "adopter-"+ns); err != nil {
		t.Fatal(err)
	}
	if err := k.Adopt(t.Context(), cp.Clientset(), ns, "other"); err != nil {
		t.Fatal(err)
	}
	pod, err := pods.Get(t.Context(), "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != "adopter-"+ns || pod.Status.Phase != corev1.PodRunning {
		t.Fatalf("node %q phase %q, want adopter-%s Running", pod.Spec.NodeName, pod.Status.Phase, ns)
	}
	if stdout, _, err := kubectl(t, "", "exec", "-n", ns, "other", "--", "echo", "adopted"); err != nil || stdout != "adopted\n" {
		t.Fatalf("exec in the adopted pod: %v %q", err, stdout)
	}
}
