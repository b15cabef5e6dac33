package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
	"kubetunnel/test/e2e/kubelet"
)

// protocols runs f once with kubectl's WebSocket protocols (the default of
// kubectl 1.30+) and once with SPDY.
func protocols(t *testing.T, f func(t *testing.T, env []string)) {
	for _, p := range []struct {
		name string
		env  []string
	}{
		{"websocket", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true", "KUBECTL_PORT_FORWARD_WEBSOCKETS=true"}},
		{"spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false", "KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}},
	} {
		t.Run(p.name, func(t *testing.T) { f(t, p.env) })
	}
}

func kubectlEnv(ctx context.Context, kubeconfig string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "kubectl", kubectlArgs(kubeconfig, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// exec, attach, logs -f and port-forward through kas → agentk → the API
// server → a kubelet, over both of kubectl's protocols: the stand-in
// kubelet, or a real pod when KUBECONFIG names a cluster (streampod_test.go).
func TestStreamingThroughKas(t *testing.T) {
	checkStreaming(t, newStreamPod(t))
}

// checkStreaming runs exec, attach, port-forward and logs -f against pod.
func checkStreaming(t *testing.T, pod *streamPod) {
	kc, ns := pod.kubeconfig, pod.ns
	protocols(t, func(t *testing.T, env []string) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()

		out, err := kubectlEnv(ctx, kc, env, "exec", "-n", ns, pod.name, "--", "echo", "hi").CombinedOutput()
		if err != nil || string(out) != "hi\n" {
			t.Errorf("exec: %v %q", err, out)
		}

		cmd := kubectlEnv(ctx, kc, env, "exec", "-i", "-n", ns, pod.name, "--", "cat")
		input := strings.Repeat("through the tunnel\n", 10000)
		cmd.Stdin = strings.NewReader(input)
		out, err = cmd.Output()
		if err != nil || string(out) != input {
			t.Errorf("exec -i cat: %v, %d bytes back of %d", err, len(out), len(input))
		}

		cmd = kubectlEnv(ctx, kc, env, "exec", "-n", ns, pod.name, "--", "sh", "-c", "echo err >&2; exit 3")
		err = cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("exit code through the tunnel: %v", err)
		}

		cmd = kubectlEnv(ctx, kc, env, "attach", "-i", "-n", ns, pod.attachable(t))
		cmd.Stdin = strings.NewReader("ping\n")
		out, err = cmd.Output()
		if err != nil || !strings.Contains(string(out), "ping") {
			t.Errorf("attach: %v %q", err, out)
		}

		// port-forward to the pod's HTTP server.
		_, local, _ := net.SplitHostPort(testutil.FreeAddr(t))
		pf := kubectlEnv(ctx, kc, env, "port-forward", "-n", ns, "pod/"+pod.name, fmt.Sprintf("%s:%d", local, podHTTPPort))
		pfOut, _ := pf.StdoutPipe()
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(pfOut)
		if !sc.Scan() || !strings.Contains(sc.Text(), "Forwarding from") {
			t.Fatalf("port-forward did not start: %q", sc.Text())
		}
		go io.Copy(io.Discard, pfOut)
		for i := range 3 {
			resp, err := http.Get("http://127.0.0.1:" + local + "/")
			if err != nil {
				t.Fatalf("request %d through port-forward: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != podHTTPBody {
				t.Errorf("port-forward answer %q", b)
			}
		}
		pf.Process.Kill()
		pf.Wait()
	})

	// logs -f streams lines as the container writes them.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := kubectlEnv(ctx, kc, nil, "logs", "-f", "-n", ns, pod.name)
	lout, _ := logs.StdoutPipe()
	if err := logs.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(lout)
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < 4 {
		line := make(chan string, 1)
		go func() {
			if sc.Scan() {
				line <- sc.Text()
			}
			close(line)
		}()
		select {
		case l, ok := <-line:
			if !ok {
				t.Fatalf("logs -f ended after %q", got)
			}
			got = append(got, l)
		case <-deadline:
			t.Fatalf("logs -f: only %q", got)
		}
	}
	if got[0] != "first line" || !strings.HasPrefix(got[3], kubelet.FollowLinePrefix) {
		t.Errorf("logs -f lines %q", got)
	}
	cancel()
	logs.Wait()
	// Every session ends once its kubectl is gone: nothing stays open in
	// the cluster behind a client that left.
	testutil.Eventually(t, 10*time.Second, "exec, attach, logs and port-forward sessions to end", func() bool { return pod.sessionsEnded(t) })
}

// kubectl cp (tar over exec) both ways, and kubectl proxy on top of kas.
func TestCopyAndKubectlProxy(t *testing.T) {
	// Always on the stand-in kubelet, whose files are on this machine.
	pod, _ := standInPod(t)
	kc, ns := pod.kubeconfig, pod.ns
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// The stand-in kubelet runs exec'd commands on this machine, so "the
	// container's filesystem" is a temp dir here.
	dir := t.TempDir()
	src := dir + "/from-laptop.txt"
	if err := os.WriteFile(src, []byte("copied through the tunnel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	podDir := t.TempDir()
	if out, err := kubectlEnv(ctx, kc, nil, "cp", src, ns+"/app:"+podDir+"/in-pod.txt").CombinedOutput(); err != nil {
		t.Fatalf("cp to pod: %v %s", err, out)
	}
	if b, err := os.ReadFile(podDir + "/in-pod.txt"); err != nil || string(b) != "copied through the tunnel\n" {
		t.Fatalf("file in the pod: %q %v", b, err)
	}
	back := dir + "/back.txt"
	if out, err := kubectlEnv(ctx, kc, nil, "cp", ns+"/app:"+podDir+"/in-pod.txt", back).CombinedOutput(); err != nil {
		t.Fatalf("cp from pod: %v %s", err, out)
	}
	if b, err := os.ReadFile(back); err != nil || string(b) != "copied through the tunnel\n" {
		t.Fatalf("file copied back: %q %v", b, err)
	}

	// kubectl proxy serves the cluster's API on a local port, through kas.
	// --append-server-path keeps /agents/<name> of the server URL.
	proxy := kubectlEnv(ctx, kc, nil, "proxy", "--port=0", "--append-server-path")
	out, _ := proxy.StdoutPipe()
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { proxy.Process.Kill(); proxy.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "Starting to serve on ") {
		t.Fatalf("kubectl proxy: %q", sc.Text())
	}
	addr := strings.TrimPrefix(sc.Text(), "Starting to serve on ")
	resp, err := http.Get("http://" + addr + "/api/v1/namespaces/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name": "`+ns+`"`) && !strings.Contains(string(body), `"name":"`+ns+`"`) {
		t.Errorf("through kubectl proxy: %d %s", resp.StatusCode, body)
	}
}
