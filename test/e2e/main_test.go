// Package e2e runs the real kas and agentk binaries against a real
// kube-apiserver, with the real kubectl as the client.
package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/internal/testutil/stack"
)

var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	// LocalOnly: exec and port-forward go through a stand-in kubelet on
	// this machine's loopback, which only a local API server can dial.
	// With KUBECONFIG set, TestStreamingThroughKas uses that cluster too
	// (streampod_test.go).
	code := controlplane.Main(m, &cp, controlplane.Options{
		LocalOnly: true,
		Users:     []controlplane.User{{Name: stack.AgentkUser, Token: stack.AgentkToken}},
	})
	if binTmp != "" {
		os.RemoveAll(binTmp)
	}
	os.Exit(code)
}

var (
	setupOnce sync.Once
	binDir    string
	binTmp    string
	setupErr  error
)

// setup builds the binaries once per package and gives agentk's identity
// cluster-admin, as upstream's default install.
func setup(t testing.TB) {
	t.Helper()
	ctx := t.Context()
	setupOnce.Do(func() {
		// agentk's identity is cluster-admin, as upstream's default install.
		_, setupErr = cp.Clientset().RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "agentk-cluster-admin"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: stack.AgentkUser}},
		}, metav1.CreateOptions{})
		if setupErr != nil {
			return
		}
		dir, err := os.MkdirTemp("", "e2e-bin")
		if err != nil {
			setupErr = err
			return
		}
		binTmp = dir
		s, err := stack.New(ctx, dir, "", cp)
		if err != nil {
			setupErr = err
			return
		}
		binDir = s.BinDir
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// newStack starts kas and agentk for one test, with the agent's
// config.yaml set to agentConfig.
func newStack(t *testing.T, agentConfig string, agentArgs ...string) *stack.Stack {
	t.Helper()
	return newStackWith(t, stack.Options{}, agentConfig, agentArgs...)
}

// newStackWith is newStack with kas options (poll period, webhook).
func newStackWith(t testing.TB, opts stack.Options, agentConfig string, agentArgs ...string) *stack.Stack {
	t.Helper()
	return newStackOn(t, cp, opts, agentConfig, agentArgs...)
}

// newStackOn is newStackWith for agentk in cluster c: the local control
// plane cp, or an existing cluster, where agentk uses the cluster's own
// kubeconfig.
func newStackOn(t testing.TB, c *controlplane.ControlPlane, opts stack.Options, agentConfig string, agentArgs ...string) *stack.Stack {
	t.Helper()
	ctx := t.Context()
	setup(t)
	s, err := stack.New(ctx, t.TempDir(), binDir, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.AgentArgs = agentArgs
	if agentConfig != "" {
		if _, err := s.Commit("agent config", map[string]string{stack.AgentConfigPath(): agentConfig}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.StartKas(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("kas log:\n%s\nagentk log:\n%s", s.KasLog(), s.AgentLog())
		}
	})
	if err := s.StartAgentk(ctx); err != nil {
		t.Fatal(err)
	}
	// agentk is ready once connected; requests need its config too.
	testutil.Eventually(t, 15*time.Second, "agentk to receive its config", func() bool {
		return strings.Contains(s.AgentLog(), "Config: new commit")
	})
	return s
}

// kubectl runs the real kubectl with a kubeconfig and returns stdout,
// stderr and the error.
func kubectl(t *testing.T, kubeconfig string, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", kubectlArgs(kubeconfig, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// kubectlArgs puts kubeconfig and a discovery cache of its own before
// args. kubectl caches discovery by host:port, and a later test's kas may
// get a port an earlier one used: with a shared cache it would skip the
// discovery requests (and their answers) this kas has not served.
func kubectlArgs(kubeconfig string, args ...string) []string {
	return append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(filepath.Dir(kubeconfig), "kube-cache")}, args...)
}

// mustKubectl fails the test when kubectl fails.
func mustKubectl(t *testing.T, kubeconfig string, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := kubectl(t, kubeconfig, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func namespace(t testing.TB) string {
	t.Helper()
	ns, err := cp.CreateNamespace(t.Context(), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
