// Command demo runs the whole product on this machine: a cluster, a git
// repository holding the agent's config, kas and agentk, and kubectl
// through the tunnel. `make demo` runs it; it stays up until Ctrl-C.
//
// The cluster is a real single node (package test/realnode: kubelet,
// controller-manager, scheduler, containerd) when this machine can run one,
// so the example workload really runs and serves; otherwise the light
// control plane (etcd + kube-apiserver only), and the demo says why.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/test/e2e/stack"
	"kubetunnel/test/realnode"
	"kubetunnel/test/realnode/images"
)

const agentConfig = `# The agent's configuration: edit, commit, and watch agentk log
# "Config: new commit".
gitops:
  manifest_projects:
  - id: demo/config            # this same repository
    default_namespace: default
    paths:
    - glob: '/manifests/**/*.yaml'
    prune_propagation_policy: {propagation}
user_access:
  access_as:
    agent: {}
observability:
  logging:
    level: info
`

// lightManifest is the example for the light control plane: nothing runs
// it, so any image will do.
const lightManifest = `apiVersion: apps/v1
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

// realManifest is the example on the real node: busybox's httpd from the
// locally imported image (no registry here), Ready once it serves.
const realManifest = `apiVersion: apps/v1
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
        image: ` + images.BusyboxRef + `
        imagePullPolicy: Never
        command: [httpd, -f, -p, "80", -h, /www]
        ports:
        - containerPort: 80
        readinessProbe:
          httpGet: {path: /, port: 80}
          periodSeconds: 1
`

func main() {
	once := flag.Bool("once", false, "set everything up, check it works, and exit (for tests)")
	light := flag.Bool("light", false, "use the light control plane (no kubelet) even where a real node can run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	real := false
	switch {
	case *light:
	case realnode.InNamespace():
		real = true
	default:
		if why := fallbackReason(); why != "" {
			step(os.Stdout, "%s", why)
			break
		}
		// The node lives in a network namespace: run this demo again in it.
		code, err := realnode.Reexec(ctx, os.Args[1:], nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			os.Exit(1)
		}
		os.Exit(code)
	}
	if err := run(ctx, os.Stdout, *once, real); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// fallbackReason says why this machine cannot run a real node, or "".
func fallbackReason() string {
	if err := realnode.Check(); err != nil {
		return "No real node on this machine, so the light control plane (pods do not run):\n" + indent(err.Error())
	}
	return ""
}

func step(w io.Writer, format string, args ...any) { fmt.Fprintf(w, "==> "+format+"\n", args...) }

// run sets everything up on a real node (inside its namespace) or on the
// light control plane, writes what it does and then the banner to w, and
// waits for ctx (Ctrl-C) unless once.
func run(ctx context.Context, w io.Writer, once, real bool) error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, ".demo")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	agentkUser := controlplane.User{Name: stack.AgentkUser, Token: stack.AgentkToken}
	var cp *controlplane.ControlPlane
	var node *realnode.Cluster
	binDir := filepath.Join(root, "bin")
	manifest, propagation := lightManifest, "background" // no garbage collector to finish a foreground deletion
	nodeInfo := ""
	if real {
		step(w, "Starting a single-node cluster in network namespace %s: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet from bin/, containerd, and images made locally (building them takes about a minute)", realnode.Namespace())
		cl, err := realnode.Start(ctx, realnode.Options{Users: []controlplane.User{agentkUser}, Logf: func(f string, a ...any) { step(w, f, a...) }})
		if err != nil {
			return err
		}
		defer cl.Stop()
		node, cp, binDir = cl, cl.CP, filepath.Dir(cl.Images.Kas)
		nodeInfo = fmt.Sprintf("  # the cluster directly, as its admin (not through kas), and its container runtime:\n  kt kubectl --kubeconfig %s get pods -A -o wide\n  kt ctr --address %s -n k8s.io images ls -q\n\n",
			cp.KubeconfigPath, cl.ContainerdSocket())
		manifest, propagation = realManifest, "foreground"
	} else {
		step(w, "Starting a local control plane (etcd + kube-apiserver from bin/)")
		cp, err = controlplane.Start(ctx, controlplane.Options{
			Dir:   filepath.Join(dir, "controlplane"),
			Users: []controlplane.User{agentkUser},
		})
		if err != nil {
			return err
		}
		defer cp.Stop()
	}
	_, err = cp.Clientset().RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "agentk-cluster-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: stack.AgentkUser}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("agentk's RBAC: %w", err)
	}
	step(w, "API server at %s", cp.URL)

	s, err := stack.New(ctx, dir, binDir, cp)
	if err != nil {
		return err
	}
	defer s.Stop()
	commit, err := s.Commit("agent config and the nginx example", map[string]string{
		stack.AgentConfigPath(): strings.Replace(agentConfig, "{propagation}", propagation, 1),
		"manifests/nginx.yaml":  manifest,
	})
	if err != nil {
		return err
	}
	step(w, "Config repository %s, commit %s", s.RepoDir, commit[:8])
	if real {
		// agentk runs in the cluster as a Pod and dials kas on the node's
		// address.
		if err := realnode.ListenKasOnNode(s); err != nil {
			return err
		}
	}
	if err := s.StartKas(ctx); err != nil {
		return err
	}
	step(w, "kas running: agents connect to ws://%s, kubectl to https://%s/agents/%s", s.AgentAddr, s.APIAddr, stack.AgentName)
	if real {
		step(w, "Installing agentk from chart/agentk (Helm SDK) into namespace %s, image %s", realnode.AgentkNamespace, images.AgentkRef)
		rel, err := node.InstallAgentk(ctx, s, nil, 3*time.Minute)
		if err != nil {
			return err
		}
		defer rel.Close()
		if err := waitAgent(ctx, s, func(a *agentStatus) bool { return a.Connected > 0 && a.ConfigCommit == commit }); err != nil {
			return fmt.Errorf("agentk's Pod did not get its config: %w", err)
		}
		step(w, "agentk's Pod connected and running config commit %s", commit[:8])
		step(w, "GitOps: agentk applies manifests/nginx.yaml from the repository")
		if err := waitAgent(ctx, s, func(a *agentStatus) bool {
			return len(a.Projects) > 0 && a.Projects[0].LastSync != nil && a.Projects[0].LastSync.Result == "synced"
		}); err != nil {
			return fmt.Errorf("GitOps did not apply the example: %w", err)
		}
	} else {
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
		step(w, "agentk connected and running config commit %s", commit[:8])

		step(w, "GitOps: agentk applies manifests/nginx.yaml from the repository")
		deadline = time.Now().Add(60 * time.Second)
		for !strings.Contains(s.AgentLog(), `msg="GitOps: synced"`) {
			if strings.Contains(s.AgentLog(), "GitOps: sync failed") || time.Now().After(deadline) {
				return fmt.Errorf("GitOps did not apply the example; agentk log:\n%s", s.AgentLog())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	step(w, "kubectl through kas: the Deployment is in the cluster")
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", s.Kubeconfig, "get", "deployments", "-n", "default",
		"-o", "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,IMAGE:.spec.template.spec.containers[0].image")
	out, err := cmd.CombinedOutput()
	fmt.Fprint(w, indent(string(out)))
	if err != nil || !strings.Contains(string(out), "nginx-deployment") {
		return fmt.Errorf("kubectl get through kas: %v", err)
	}
	who, err := whoami(ctx, s.Kubeconfig)
	if err != nil {
		return err
	}
	step(w, "kubectl talks to kas as user %s; the cluster sees %s (the agent's config: access_as: {agent: {}})", stack.User, who)
	if real {
		if err := serve(ctx, w, s, cp); err != nil {
			return err
		}
	}
	if once {
		step(w, "Demo works.")
		return nil
	}
	rel := func(p string) string { r, _ := filepath.Rel(root, p); return r }
	// On the real node everything listens inside the node's network
	// namespace: commands reach it through nsenter.
	kt, where, example := "", "", `  # GitOps: change the manifest, commit, and watch it apply (within ~1 s):
  kubectl get deployment nginx-deployment -w &
  sed -i 's/replicas: 1/replicas: 3/' {repo}/manifests/nginx.yaml && git -C {repo} commit -qam "3 replicas"
`
	if !real {
		where = `
This control plane is etcd and kube-apiserver only: no scheduler, no
controllers, no kubelet. Objects are stored and served, but nothing acts on
them: the Deployment stays READY 0/1 with no ReplicaSet or Pod, and there is
no Pod for kubectl logs, exec or port-forward.
`
	}
	if real {
		kt = "kt "
		where = "\nThe cluster lives in network namespace {ns}; as root, reach it with\n\n  alias kt='nsenter --net=/run/netns/{ns}'\n"
		example = `  # The example really runs (busybox httpd): forward a port to it through kas
  kt kubectl port-forward deployment/nginx-deployment 8080:80 &
  kt curl -s http://127.0.0.1:8080/
  kt kubectl logs -f deployment/nginx-deployment
  kt kubectl exec -it deployment/nginx-deployment -- sh

` + nodeInfo + `  # GitOps: change the manifest, commit, and watch it apply (within ~1 s):
  kt kubectl get deployment nginx-deployment -w &
  sed -i 's/replicas: 1/replicas: 3/' {repo}/manifests/nginx.yaml && git -C {repo} commit -qam "3 replicas"
`
	}
	agentTail := "  tail -f {agentlog}\n"
	agentMetrics := "  curl -s http://{agentobs}/metrics | grep '^agentk_' # agentk metrics\n"
	logs := "{kaslog} and {agentlog}"
	if real {
		admin := "kt kubectl --kubeconfig " + cp.KubeconfigPath + " -n " + realnode.AgentkNamespace
		agentTail = "  " + admin + " logs -f deployment/agentk\n"
		agentMetrics = "  " + admin + " port-forward deployment/agentk 8080 &\n  kt curl -s http://127.0.0.1:8080/metrics | grep '^agentk_' # agentk metrics\n"
		logs = "{kaslog}, agentk's with kubectl logs, the node's daemons' in " + node.Dir
	}
	banner := strings.NewReplacer("{example}", example, "{where}", where,
		"{agenttail}", agentTail, "{agentmetrics}", agentMetrics, "{logs}", logs).Replace(`{where}
Everything is up. Try, from {root}:

  # kubectl reaches the cluster through kas with user {user}'s token. kas
  # lets {user} use the agent, whose config.yaml says access_as: {agent: {}},
  # so the cluster sees agentk's identity, not {user}: whoami says {who}.
  export KUBECONFIG={kubeconfig}
  kt kubectl get deployments -A
  kt kubectl get namespaces -w         # a watch through the tunnel (Ctrl-C to stop)
  kt kubectl auth whoami

{example}  kt curl -s http://{kasobs}/api/v1/agents/demo      # kas's view: last sync, counts, health

  # change the agent's config and watch agentk pick it up:
  ${EDITOR:-vi} {repo}/{config} && git -C {repo} commit -qam change
{agenttail}
  kt curl -s http://{kasobs}/metrics | grep '^kas_'      # kas metrics
{agentmetrics}
Logs: {logs}. Ctrl-C stops everything.
`)
	fmt.Fprint(w, strings.NewReplacer(
		"kt ", kt, "{ns}", realnode.Namespace(),
		"{who}", who, "{root}", root, "{kubeconfig}", rel(s.Kubeconfig), "{user}", stack.User, "{repo}", rel(s.RepoDir),
		"{config}", stack.AgentConfigPath(), "{agentlog}", rel(filepath.Join(dir, "agentk.log")),
		"{kaslog}", rel(filepath.Join(dir, "kas.log")), "{kasobs}", s.ObsAddr, "{agentobs}", s.AgentObs,
	).Replace(banner))
	<-ctx.Done()
	step(w, "Stopping")
	return nil
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

// serve waits until the example Deployment is available on the real node,
// then forwards a port to it with kubectl through kas and fetches its page:
// the workload really runs and serves.
func serve(ctx context.Context, w io.Writer, s *stack.Stack, cp *controlplane.ControlPlane) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		d, err := cp.Clientset().AppsV1().Deployments("default").Get(ctx, "nginx-deployment", metav1.GetOptions{})
		if err == nil && d.Status.AvailableReplicas >= 1 {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("the example Deployment is not available after 3 minutes: %w", err)
			}
			return fmt.Errorf("the example Deployment is not available after 3 minutes: %+v", d.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	step(w, "The example runs: kubectl port-forward through kas, then a request to it")
	pf := exec.CommandContext(ctx, "kubectl", "--kubeconfig", s.Kubeconfig, "port-forward", "deployment/nginx-deployment", ":80")
	stdout, err := pf.StdoutPipe()
	if err != nil {
		return err
	}
	if err := pf.Start(); err != nil {
		return err
	}
	defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	fmt.Fprint(w, indent(line))
	_, port, ok := strings.Cut(strings.Fields(line + " x x x")[2], ":")
	if !ok || !strings.HasPrefix(line, "Forwarding from 127.0.0.1:") {
		return fmt.Errorf("kubectl port-forward said %q", line)
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/")
	if err != nil {
		return fmt.Errorf("request through the port-forward: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Fprint(w, indent(fmt.Sprintf("GET / -> %s: %s", resp.Status, body)))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "busybox httpd") {
		return fmt.Errorf("the example answered %s %q", resp.Status, body)
	}
	return nil
}

// whoami is the user the cluster sees for kubectl through kas.
func whoami(ctx context.Context, kubeconfig string) (string, error) {
	out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "auth", "whoami",
		"-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
	if err != nil || len(out) == 0 {
		return "", fmt.Errorf("kubectl auth whoami through kas: %v: %s", err, out)
	}
	return string(out), nil
}

// agentStatus is kas's view of the demo agent (/api/v1/agents/demo).
type agentStatus struct {
	Connected    int    `json:"connected_sessions"`
	ConfigCommit string `json:"config_commit"`
	Projects     []struct {
		LastSync *struct {
			Result string `json:"result"`
			Reason string `json:"reason"`
		} `json:"last_sync"`
	} `json:"projects"`
}

// waitAgent polls kas's agent status until cond holds (a minute at most).
func waitAgent(ctx context.Context, s *stack.Stack, cond func(*agentStatus) bool) error {
	deadline := time.Now().Add(time.Minute)
	var last agentStatus
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.ObsAddr+"/api/v1/agents/"+stack.AgentName, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			last = agentStatus{}
			_ = json.NewDecoder(resp.Body).Decode(&last)
			resp.Body.Close()
			if cond(&last) {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("kas reports %+v; kas log:\n%s", last, s.KasLog())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
