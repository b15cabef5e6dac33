package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/stack"
	"kubetunnel/test/e2e/netns"
)

// The API server's service proxy through kas: kubectl get --raw
// /api/v1/namespaces/N/services/S:P/proxy/... reaches an HTTP server
// behind a Service, the answer streams, and a POST body arrives whole.
//
// The API server proxies only to endpoints that are a pod's IP and not
// loopback, so the server listens in a network namespace of its own
// (a veth pair, a 10.x address) and a pod reports that IP.
func TestServiceProxyThroughKas(t *testing.T) {
	n, err := netns.Create(t.Context())
	if errors.Is(err, netns.ErrNotRoot) {
		t.Fatalf("this test needs root: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("remove network namespace: %v", err)
		}
	})
	ln, err := n.Listen("0")
	if err != nil {
		t.Fatal(err)
	}
	// The streaming handler writes its first chunk, then waits until the
	// test has read that chunk from kubectl: a proxy that buffered the
	// response would deadlock here, and the test would time out.
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "hello from %s to %s", n.IP, host)
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "chunk 1")
		w.(http.Flusher).Flush()
		select {
		case <-release:
			fmt.Fprintln(w, "chunk 2")
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
			fmt.Fprintln(w, "chunk 2 after a timeout: chunk 1 was not seen in time")
		}
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(w, `{"method":%q,"bytes":%d,"sha256":%q}`, r.Method, len(b), hex.EncodeToString(sum[:]))
	})
	srv := &http.Server{Handler: mux}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	port := ln.Addr().(*net.TCPAddr).Port

	s := newStack(t, "")
	ns := namespace(t)
	createServiceFor(t, ns, "web", n.IP.String(), int32(port))
	// kubectl get --raw sends its path as given, without the server URL's
	// /agents/<name>: the path has to name the agent.
	path := "/api/v1/namespaces/" + ns + "/services/web:http/proxy"
	base := "/agents/" + stack.AgentName + path

	// The API server learns of the EndpointSlice through an informer.
	var out, errOut string
	start := time.Now()
	testutil.Poll(t, 200*time.Millisecond, 20*time.Second, "the service proxy to answer", func() error {
		var err error
		if out, errOut, err = kubectl(t, s.Kubeconfig, "", "get", "--raw", base+"/hello"); err != nil {
			return fmt.Errorf("%w %s%s", err, out, errOut)
		}
		return nil
	})
	t.Logf("the service proxy answered after %v", time.Since(start).Round(time.Millisecond))
	// The connection comes from the host end of the veth pair: the API
	// server dialed the endpoint, not something on loopback.
	if want := fmt.Sprintf("hello from %s to %s", n.IP, n.HostIP); out != want {
		t.Errorf("get --raw %s/hello = %q (stderr %q), want %q", base, out, errOut, want)
	}

	// Streaming: chunk 1 reaches kubectl's stdout while the handler is
	// still running.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := kubectlEnv(ctx, s.Kubeconfig, nil, "get", "--raw", base+"/stream")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	select {
	case l := <-lines:
		if l != "chunk 1" {
			t.Errorf("first line %q, want chunk 1", l)
		}
	case <-time.After(20 * time.Second):
		t.Error("chunk 1 did not arrive while the handler was still running: the response was buffered")
	}
	close(release)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if err := cmd.Wait(); err != nil || len(rest) != 1 || rest[0] != "chunk 2" {
		t.Errorf("rest of the stream %q, kubectl: %v %s", rest, err, stderr.String())
	}

	// A POST body of 2 MB arrives whole.
	body := strings.Repeat("posted through kas and the API server\n", 2<<20/38)
	file := filepath.Join(t.TempDir(), "body.txt")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	out = mustKubectl(t, s.Kubeconfig, "", "create", "--raw", base+"/echo", "-f", file)
	if want := fmt.Sprintf(`{"method":"POST","bytes":%d,"sha256":%q}`, len(body), hex.EncodeToString(sum[:])); out != want {
		t.Errorf("POST echo = %q, want %q", out, want)
	}

	// kas's audit log has the proxied request, as for any other.
	if log, ok := s.WaitKasLog("path=" + path + "/echo status=200"); !ok {
		t.Errorf("no audit line for the POST:\n%s", log)
	}
	// Without the agent in the path, kas says how to write it.
	if _, errOut, err := kubectl(t, s.Kubeconfig, "", "get", "--raw", path+"/hello"); err == nil || !strings.Contains(errOut, "kubectl get --raw paths start with /agents/<agent-name>/") {
		t.Errorf("get --raw without /agents/<name>: %v %s", err, errOut)
	}
}

// createServiceFor creates a Service without a selector, a pod that
// reports ip as its IP (the API server proxies only to pod IPs), and an
// EndpointSlice pointing the Service's port "http" at ip:port.
func createServiceFor(t *testing.T, ns, name, ip string, port int32) {
	t.Helper()
	ctx := t.Context()
	cs := cp.Clientset()
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{{Name: "main", Image: "kubetunnel.invalid/web:latest"}},
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: 80, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP,
		}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
