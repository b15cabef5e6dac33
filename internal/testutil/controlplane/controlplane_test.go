package controlplane_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"kubetunnel/internal/testutil/controlplane"
)

var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(controlplane.Main(m, &cp, controlplane.Options{}))
}

func TestAdminClient(t *testing.T) {
	v, err := cp.Clientset().Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	t.Logf("server version %s at %s", v.GitVersion, cp.URL)
	if _, err := cp.Clientset().CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get default namespace: %v", err)
	}
}

func TestKubectlWithAdminKubeconfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", cp.KubeconfigPath,
		"get", "namespace", "default", "-o", "name").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "namespace/default" {
		t.Fatalf("kubectl get namespace default = %q, want namespace/default", got)
	}
}

func TestCreateNamespace(t *testing.T) {
	ctx := t.Context()
	a, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	b, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	if a == b || !strings.HasPrefix(a, "testcreatenamespace-") {
		t.Fatalf("namespaces %q and %q: want two distinct names starting with testcreatenamespace-", a, b)
	}
	cs := cp.Clientset()
	if _, err := cs.CoreV1().ServiceAccounts(a).Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("default service account: %v", err)
	}
	// The ServiceAccount admission plugin rejects pods whose service
	// account does not exist; creating one proves the namespace is usable.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/c"}}},
	}
	if _, err := cs.CoreV1().Pods(a).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
}

func TestFromKubeconfig(t *testing.T) {
	existing, err := controlplane.FromKubeconfig(cp.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if existing.URL != cp.URL {
		t.Errorf("URL = %q, want %q", existing.URL, cp.URL)
	}
	if _, err := existing.Clientset().CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatalf("list namespaces: %v", err)
	}
	if _, err := existing.KubeconfigFor(controlplane.User{Name: "x", Token: "y"}); !errors.Is(err, controlplane.ErrExistingCluster) {
		t.Errorf("KubeconfigFor on an existing cluster: err = %v, want ErrExistingCluster", err)
	}
	if err := existing.Stop(); err != nil {
		t.Fatal(err)
	}
	// Stopping the wrapper must leave the cluster running.
	if _, err := cp.Clientset().Discovery().ServerVersion(); err != nil {
		t.Fatalf("cluster gone after stopping its wrapper: %v", err)
	}
}

// KUBECONFIG decides between an existing cluster and a local one.
func TestExistingKubeconfig(t *testing.T) {
	for _, tc := range []struct {
		env, want string
		wantErr   bool
	}{
		{env: "", want: ""},
		{env: "/home/me/.kube/kind", want: "/home/me/.kube/kind"},
		{env: "/a" + string(os.PathListSeparator) + "/b", wantErr: true},
	} {
		got, err := controlplane.ExistingKubeconfig(func(k string) string {
			if k != "KUBECONFIG" {
				t.Errorf("read %s, want KUBECONFIG", k)
			}
			return tc.env
		})
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("KUBECONFIG=%q: got %q, %v; want %q, error %v", tc.env, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestStartStop starts a second, private control plane so it can check
// static users, a caller-chosen Dir, and that Stop really ends everything.
func TestStartStop(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	alice := controlplane.User{Name: "alice", Token: "alice-token", Groups: []string{"tenants", "testers"}}
	began := time.Now()
	c, err := controlplane.Start(ctx, controlplane.Options{Dir: dir, Logf: t.Logf, Users: []controlplane.User{alice}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %s", time.Since(began).Round(time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()

	path, err := c.KubeconfigFor(alice)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	aliceClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := aliceClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review as alice: %v", err)
	}
	if u := review.Status.UserInfo; u.Username != "alice" || !slices.Contains(u.Groups, "tenants") || !slices.Contains(u.Groups, "testers") {
		t.Fatalf("alice is seen as %+v", u)
	}
	// RBAC is on and grants alice nothing.
	_, err = aliceClient.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("alice listing namespaces: err = %v, want Forbidden", err)
	}

	pids := c.PIDs()
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, pid := range pids {
		// Reaped children no longer exist; signal 0 only checks that.
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop (kill -0: %v)", pid, err)
		}
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Stop", u.Host)
	}
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver.log")); err != nil {
		t.Errorf("Stop removed the caller's Dir: %v", err)
	}
}
