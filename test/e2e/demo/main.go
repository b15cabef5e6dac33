// Command demo runs the whole product on this machine: a local control
// plane (etcd + kube-apiserver built from our module graph), a git
// repository holding the agent's config, kas and agentk, and kubectl
// through the tunnel. `make demo` runs it; it stays up until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/test/e2e/controlplane"
	"kubetunnel/test/e2e/stack"
)

const agentConfig = `# The agent's configuration: edit, commit, and watch agentk log
# "Config: new commit".
gitops:
  manifest_projects:
  - id: demo/config            # this same repository
    default_namespace: default
    paths:
    - glob: '/manifests/**/*.yaml'
    # The demo's control plane has no garbage collector, which foreground
    # deletion waits for.
    prune_propagation_policy: background
user_access:
  access_as:
    agent: {}
observability:
  logging:
    level: info
`

const manifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  namespace: default
  labels:
    app: nginx
spec:
  replicas: 1
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
`

func main() {
	once := flag.Bool("once", false, "set everything up, check it works, and exit (for tests)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *once); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(ctx context.Context, once bool) error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, ".demo")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	step("Starting a local control plane (etcd + kube-apiserver from bin/)")
	cp, err := controlplane.Start(ctx, controlplane.Options{
		Dir:   filepath.Join(dir, "controlplane"),
		Users: []controlplane.User{{Name: stack.AgentkUser, Token: stack.AgentkToken}},
	})
	if err != nil {
		return err
	}
	defer cp.Stop()
	_, err = cp.Clientset().RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "agentk-cluster-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: stack.AgentkUser}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("agentk's RBAC: %w", err)
	}
	step("API server at %s", cp.URL)

	s, err := stack.New(ctx, dir, filepath.Join(root, "bin"), cp)
	if err != nil {
		return err
	}
	defer s.Stop()
	commit, err := s.Commit("agent config and the nginx example", map[string]string{
		stack.AgentConfigPath(): agentConfig,
		"manifests/nginx.yaml":  manifest,
	})
	if err != nil {
		return err
	}
	step("Config repository %s, commit %s", s.RepoDir, commit[:8])
	if err := s.StartKas(ctx); err != nil {
		return err
	}
	step("kas running: agents connect to ws://%s, kubectl to https://%s/agents/%s", s.AgentAddr, s.APIAddr, stack.AgentName)
	if err := s.StartAgentk(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.AgentLog(), commit) {
		if time.Now().After(deadline) {
			return fmt.Errorf("agentk did not receive its config; agentk log:\n%s", s.AgentLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	step("agentk connected and running config commit %s", commit[:8])

	step("GitOps: agentk applies manifests/nginx.yaml from the repository")
	deadline = time.Now().Add(60 * time.Second)
	for !strings.Contains(s.AgentLog(), `msg="GitOps: synced"`) {
		if strings.Contains(s.AgentLog(), "GitOps: sync failed") || time.Now().After(deadline) {
			return fmt.Errorf("GitOps did not apply the example; agentk log:\n%s", s.AgentLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	step("kubectl through kas: the Deployment is in the cluster")
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", s.Kubeconfig, "get", "deployments", "-n", "default",
		"-o", "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,IMAGE:.spec.template.spec.containers[0].image")
	out, err := cmd.CombinedOutput()
	fmt.Print(indent(string(out)))
	if err != nil || !strings.Contains(string(out), "nginx-deployment") {
		return fmt.Errorf("kubectl get through kas: %v", err)
	}
	if once {
		step("Demo works.")
		return nil
	}
	rel := func(p string) string { r, _ := filepath.Rel(root, p); return r }
	fmt.Print(strings.NewReplacer(
		"{root}", root, "{kubeconfig}", rel(s.Kubeconfig), "{user}", stack.User, "{repo}", rel(s.RepoDir),
		"{config}", stack.AgentConfigPath(), "{agentlog}", rel(filepath.Join(dir, "agentk.log")),
		"{kaslog}", rel(filepath.Join(dir, "kas.log")), "{kasobs}", s.ObsAddr, "{agentobs}", s.AgentObs,
	).Replace(`
Everything is up. Try, from {root}:

  export KUBECONFIG={kubeconfig}      # reaches the cluster through kas, as user {user}
  kubectl get deployments -A
  kubectl get namespaces -w         # a watch through the tunnel (Ctrl-C to stop)
  kubectl auth whoami

  # GitOps: change the manifest, commit, and watch it apply (within ~1 s):
  kubectl get deployment nginx-deployment -w &
  sed -i 's/replicas: 1/replicas: 3/' {repo}/manifests/nginx.yaml && git -C {repo} commit -qam "3 replicas"
  curl -s http://{kasobs}/api/v1/agents/demo      # kas's view: last sync, counts, health

  # change the agent's config and watch agentk pick it up:
  $EDITOR {repo}/{config} && git -C {repo} commit -qam change
  tail -f {agentlog}

  curl -s http://{kasobs}/metrics | grep '^kas_'      # kas metrics
  curl -s http://{agentobs}/metrics | grep '^agentk_' # agentk metrics

Logs: {kaslog} and {agentlog}. Ctrl-C stops everything.
`))
	<-ctx.Done()
	step("Stopping")
	return nil
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
