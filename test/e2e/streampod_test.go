package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/test/e2e/kubelet"
	"kubetunnel/test/e2e/stack"
)

// The pod of the streaming tests (exec, attach, logs -f, port-forward)
// runs in one of two places:
//   - without KUBECONFIG, on the local control plane, played by the
//     stand-in kubelet (exec'd commands run on this machine);
//   - with KUBECONFIG naming a cluster (kind), as a real busybox pod
//     there, with agentk using that kubeconfig.
//
// Either way the pod answers podHTTPBody on podHTTPPort and logs "first
// line", then "follow line N" every 100 ms, so the tests are the same.
const (
	podHTTPBody = "hello from the pod"
	podHTTPPort = 8080
)

// streamPod is a running pod that kubectl reaches through kas.
type streamPod struct {
	stack      *stack.Stack
	kubeconfig string // through kas
	ns, name   string
	// attachable returns a running pod whose container echoes what
	// kubectl attach -i sends it, until end of input.
	attachable func(t *testing.T) string
	// sessionsEnded reports that no exec, attach, logs or port-forward
	// session is left open behind kubectl: none in kas, and on the
	// stand-in also none at the kubelet.
	sessionsEnded func(t *testing.T) bool
}

// newStreamPod starts kas and agentk and a pod, in the cluster KUBECONFIG
// names or else on the local control plane.
func newStreamPod(t *testing.T) *streamPod {
	t.Helper()
	path, err := controlplane.ExistingKubeconfig(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if path != "" {
		return clusterPod(t, path)
	}
	p, _ := standInPod(t)
	return p
}

// standInPod is the pod on the local control plane, and its kubelet.
func standInPod(t *testing.T) (*streamPod, *kubelet.Kubelet) {
	t.Helper()
	s := newStack(t, "")
	ns := namespace(t)
	k, err := kubelet.Start(t.Context(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if err := k.RegisterNode(t.Context(), cp.Clientset(), "node-"+ns); err != nil {
		t.Fatal(err)
	}
	if err := k.CreatePod(t.Context(), cp.Clientset(), ns, "app"); err != nil {
		t.Fatal(err)
	}
	playBusybox(t, k)
	return &streamPod{
		stack: s, kubeconfig: s.Kubeconfig, ns: ns, name: "app",
		// The stand-in's attach echoes stdin in every pod.
		attachable:    func(*testing.T) string { return "app" },
		sessionsEnded: func(t *testing.T) bool { return k.Active() == 0 && kasInflight(t, s) == 0 },
	}, k
}

// playBusybox makes every pod of the stand-in kubelet answer and log as
// the busybox pod does.
func playBusybox(t *testing.T, k *kubelet.Kubelet) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, podHTTPBody)
	}))
	t.Cleanup(backend.Close)
	k.SetPortForward(podHTTPPort, strings.TrimPrefix(backend.URL, "http://"))
	k.SetLogs([]string{"first line"}, 100*time.Millisecond)
}

// busyboxImage is the real pod's image. KUBETUNNEL_E2E_BUSYBOX_IMAGE
// overrides it, for a cluster that cannot pull from Docker Hub (load one
// with kind load docker-image).
func busyboxImage() string {
	if img := os.Getenv("KUBETUNNEL_E2E_BUSYBOX_IMAGE"); img != "" {
		return img
	}
	return "busybox:1.36"
}

// clusterPod is a real busybox pod in the cluster kubeconfig names, in a
// namespace deleted at the end of the test.
func clusterPod(t *testing.T, kubeconfig string) *streamPod {
	t.Helper()
	c, err := controlplane.FromKubeconfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	t.Logf("streaming tests against the cluster at %s (KUBECONFIG=%s)", c.URL, kubeconfig)
	s := newStackOn(t, c, stack.Options{}, "")
	ns, err := c.CreateNamespace(t.Context(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Clientset().CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
	script := fmt.Sprintf(`mkdir -p /www && printf %%s %q > /www/index.html && httpd -p %d -h /www &&
echo "first line" && i=0 && while true; do i=$((i+1)); echo "%s$i"; sleep 0.1; done`,
		podHTTPBody, podHTTPPort, kubelet.FollowLinePrefix)
	runPod(t, c, ns, corev1.Container{
		Name: "main", Image: busyboxImage(), Command: []string{"sh", "-c", script},
		Ports: []corev1.ContainerPort{{ContainerPort: podHTTPPort}},
	}, "app", corev1.RestartPolicyAlways)
	var attaches atomic.Int32
	return &streamPod{
		stack: s, kubeconfig: s.Kubeconfig, ns: ns, name: "app",
		// cat with stdinOnce exits at the end of the first attach's input,
		// so each attach gets a pod of its own.
		attachable: func(t *testing.T) string {
			name := "attach-" + strconv.Itoa(int(attaches.Add(1)))
			runPod(t, c, ns, corev1.Container{
				Name: "main", Image: busyboxImage(), Command: []string{"cat"}, Stdin: true, StdinOnce: true,
			}, name, corev1.RestartPolicyNever)
			return name
		},
		sessionsEnded: func(t *testing.T) bool { return kasInflight(t, s) == 0 },
	}
}

// The KUBECONFIG (kind) path of TestStreamingThroughKas, run where there
// is no kind: the local control plane is the "existing cluster" (through
// its admin kubeconfig) and the stand-in kubelet adopts the busybox pods
// in place of a scheduler and a container runtime. Their commands do not
// run, the stand-in plays them; what this keeps from rotting is the
// wiring: agentk on the cluster's kubeconfig, the pods and attach pods,
// the wait for them, the namespace's removal.
func TestStreamingClusterWiring(t *testing.T) {
	k, err := kubelet.Start(t.Context(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if err := k.RegisterNode(t.Context(), cp.Clientset(), "node-cluster-wiring"); err != nil {
		t.Fatal(err)
	}
	playBusybox(t, k)
	ctx, cancel := context.WithCancel(t.Context())
	adopted := make(chan struct{})
	go func() {
		defer close(adopted)
		for ctx.Err() == nil {
			pods, err := cp.Clientset().CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName="})
			if err == nil {
				for _, p := range pods.Items {
					if p.Spec.Containers[0].Image == busyboxImage() && p.DeletionTimestamp == nil {
						if err := k.Adopt(ctx, cp.Clientset(), p.Namespace, p.Name); err != nil && ctx.Err() == nil {
							t.Errorf("adopt %s/%s: %v", p.Namespace, p.Name, err)
						}
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-adopted
	})
	checkStreaming(t, clusterPod(t, cp.KubeconfigPath))
}

// runPod creates a pod with one container and waits until it runs.
func runPod(t *testing.T, c *controlplane.ControlPlane, ns string, container corev1.Container, name string, restart corev1.RestartPolicy) {
	t.Helper()
	pods := c.Clientset().CoreV1().Pods(ns)
	_, err := pods.Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{container},
			RestartPolicy:                 restart,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The first run on a fresh kind cluster pulls the image.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pod, err := pods.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s not ready after 3 minutes (image %s): phase %s, containers %+v",
				ns, name, container.Image, pod.Status.Phase, pod.Status.ContainerStatuses)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// kasInflight reads kas_proxy_inflight, the requests kas is proxying now.
func kasInflight(t *testing.T, s *stack.Stack) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.ObsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "kas_proxy_inflight "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("kas_proxy_inflight %q: %v", v, err)
			}
			return f
		}
	}
	t.Fatal("kas does not expose kas_proxy_inflight")
	return 0
}
