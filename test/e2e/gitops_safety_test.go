package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/internal/testutil/stack"
)

// projectStatus is one manifest project in kas's status API.
type projectStatus struct {
	Name             string `json:"name"`
	ID               string `json:"id"`
	DefaultNamespace string `json:"default_namespace"`
	LastSync         *struct {
		CommitID      string    `json:"commit_id"`
		Result        string    `json:"result"`
		Reason        string    `json:"reason"`
		Applied       int       `json:"applied"`
		Pruned        int       `json:"pruned"`
		Health        string    `json:"health"`
		Attempts      int       `json:"attempts"`
		NextRetryAt   time.Time `json:"next_retry_at"`
		PendingPrunes []struct {
			Object        string    `json:"object"`
			Finalizers    []string  `json:"finalizers"`
			DeletingSince time.Time `json:"deleting_since"`
		} `json:"pending_prunes"`
	} `json:"last_sync"`
}

func projectsOf(t *testing.T, s *stack.Stack) map[string]projectStatus {
	t.Helper()
	resp, err := http.Get("http://" + s.ObsAddr + "/api/v1/agents/" + stack.AgentName)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Projects []projectStatus `json:"projects"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	out := map[string]projectStatus{}
	for _, p := range a.Projects {
		out[p.Name] = p
	}
	return out
}

// waitProject waits until kas shows a sync of commit for the project
// named name that cond accepts.
func waitProject(t *testing.T, s *stack.Stack, name, commit, what string, cond func(p projectStatus) bool) projectStatus {
	t.Helper()
	var p projectStatus
	testutil.Eventually(t, 60*time.Second, name+": "+what, func() bool {
		p = projectsOf(t, s)[name]
		return p.LastSync != nil && (commit == "" || p.LastSync.CommitID == commit) && cond(p)
	})
	return p
}

func resultIs(r string) func(projectStatus) bool {
	return func(p projectStatus) bool { return p.LastSync.Result == r }
}

// safetyConfig: two projects sharing the config repository, the first
// unnamed (it shows as "<id>@<namespace>"), the second named "second".
func safetyConfig(ns, ns2, glob string) string {
	return fmt.Sprintf(`gitops:
  manifest_projects:
  - id: %[1]s
    default_namespace: %[2]s
    paths:
    - glob: '%[4]s'
    prune_propagation_policy: background
  - id: %[1]s
    name: second
    default_namespace: %[3]s
    paths:
    - glob: '/other/**/*.yaml'
    prune_propagation_policy: background
`, stack.ConfigProject, ns, ns2, glob)
}

const e2eDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: %s
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example.invalid/web:1
`

// GitOps safety on the real binaries and API server: two projects sharing
// a repository are two entries; a typo'd glob prunes nothing; a commit
// with an object the API server rejects changes nothing; a prune held by
// a finalizer is reported and does not hold back the next commit; a
// failed sync is retried with backoff without a new commit; health is
// followed between syncs.
func TestGitOpsSafety(t *testing.T) {
	ns, ns2 := namespace(t), namespace(t)
	s := newStack(t, safetyConfig(ns, ns2, "/manifests/**/*.yaml"), "--gitops-reconcile-period=1h")
	first := stack.ConfigProject + "@" + ns
	ctx := t.Context()
	cms := cp.Clientset().CoreV1().ConfigMaps(ns)
	exists := func(name string) bool {
		_, err := cms.Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	commit := func(msg string, files map[string]string) string {
		t.Helper()
		for path, content := range files {
			if content == "" {
				os.Remove(filepath.Join(s.RepoDir, path))
			}
		}
		c, err := s.Commit(msg, files)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := commit("start", map[string]string{
		"manifests/a.yaml": configMap("cm-a", "1"),
		"manifests/b.yaml": configMap("cm-b", "1"),
		"other/x.yaml":     configMap("cm-x", "1"),
	})
	waitProject(t, s, first, c, "synced", resultIs("synced"))
	p2 := waitProject(t, s, "second", c, "synced", resultIs("synced"))
	if p2.ID != stack.ConfigProject || p2.DefaultNamespace != ns2 || p2.LastSync.Applied != 1 {
		t.Errorf("second project: %+v %+v", p2, p2.LastSync)
	}
	if p := projectsOf(t, s)[first]; p.DefaultNamespace != ns || p.LastSync.Applied != 2 {
		t.Errorf("first project: %+v %+v", p, p.LastSync)
	}

	// A typo'd glob: nothing matched, nothing pruned, reported as such.
	c = commit("typo", map[string]string{stack.AgentConfigPath(): safetyConfig(ns, ns2, "/manifest/**/*.yaml")})
	p := waitProject(t, s, first, "", "no_manifests_matched", resultIs("no_manifests_matched"))
	if !strings.Contains(p.LastSync.Reason, `"/manifest/**/*.yaml" select no file`) || p.LastSync.Pruned != 0 {
		t.Errorf("typo: %+v", p.LastSync)
	}
	if !exists("cm-a") || !exists("cm-b") {
		t.Fatal("a typo'd glob pruned objects")
	}
	if !strings.Contains(s.AgentLog(), "no manifests matched") {
		t.Error("agentk did not log no manifests matched")
	}
	if v, _ := metrics.MustScrape(t, "http://"+s.ObsAddr+"/metrics").Value("kas_gitops_sync_status", "agent", stack.AgentName, "project", first, "result", "no_manifests_matched"); v != 1 {
		t.Errorf(`kas_gitops_sync_status{agent=%q,project=%q,result="no_manifests_matched"} is %v, want 1`, stack.AgentName, first, v)
	}
	if v, _ := metrics.MustScrape(t, "http://"+s.AgentObs+"/metrics").Value("agentk_gitops_project_result", "project", first, "result", "no_manifests_matched"); v != 1 {
		t.Errorf(`agentk_gitops_project_result{project=%q,result="no_manifests_matched"} is %v, want 1`, first, v)
	}
	if got := projectsOf(t, s)["second"].LastSync.Result; got != "synced" {
		t.Errorf("the second project shows %q", got)
	}
	c = commit("fix the glob", map[string]string{stack.AgentConfigPath(): safetyConfig(ns, ns2, "/manifests/**/*.yaml")})
	waitProject(t, s, first, "", "synced again", resultIs("synced"))

	// One rejected object: nothing applied, nothing pruned, the file named.
	c = commit("bad replicas", map[string]string{
		"manifests/a.yaml":   configMap("cm-a", "2"),
		"manifests/b.yaml":   "",
		"manifests/web.yaml": fmt.Sprintf(e2eDeployment, `"abc"`),
	})
	p = waitProject(t, s, first, c, "stalled", resultIs("stalled"))
	if !strings.Contains(p.LastSync.Reason, "/manifests/web.yaml: document 1: Deployment.apps "+ns+"/web") {
		t.Errorf("reason does not name the file and object: %q", p.LastSync.Reason)
	}
	if cm, err := cms.Get(ctx, "cm-a", metav1.GetOptions{}); err != nil || cm.Data["value"] != "1" {
		t.Errorf("cm-a changed by a rejected commit: %v %v", cm.Data, err)
	}
	if !exists("cm-b") {
		t.Error("cm-b pruned by a rejected commit")
	}

	// Fixed; a controller holds cm-b with a finalizer as it is pruned.
	if _, err := cms.Patch(ctx, "cm-b", types.MergePatchType, []byte(`{"metadata":{"finalizers":["example.com/hold"]}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cp.Clientset().CoreV1().ConfigMaps(ns).Patch(t.Context(), "cm-b", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})
	c = commit("fix replicas", map[string]string{"manifests/web.yaml": fmt.Sprintf(e2eDeployment, "1")})
	p = waitProject(t, s, first, c, "synced with cm-b pending", func(p projectStatus) bool {
		return p.LastSync.Result == "synced" && len(p.LastSync.PendingPrunes) == 1
	})
	pp := p.LastSync.PendingPrunes[0]
	if pp.Object != "ConfigMap "+ns+"/cm-b" || len(pp.Finalizers) != 1 || pp.Finalizers[0] != "example.com/hold" || time.Since(pp.DeletingSince) > time.Minute {
		t.Errorf("pending prune: %+v", pp)
	}
	if !strings.Contains(s.AgentLog(), "pruned object not gone yet") {
		t.Error("agentk did not log the pending prune")
	}
	start := time.Now()
	c = commit("newer commit", map[string]string{"manifests/c.yaml": configMap("cm-c", "1")})
	waitProject(t, s, first, c, "newer commit synced", resultIs("synced"))
	if !exists("cm-c") {
		t.Error("cm-c not applied")
	}
	t.Logf("newer commit applied %s after the commit, with cm-b still held", time.Since(start).Round(time.Millisecond))

	// Health followed between syncs: the Deployment is Progressing until
	// (no controller-manager here) the test marks it available.
	waitProject(t, s, first, c, "Progressing", func(p projectStatus) bool { return p.LastSync.Health == "Progressing" })
	deps := cp.Clientset().AppsV1().Deployments(ns)
	d, err := deps.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}}
	start = time.Now()
	if _, err := deps.UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitProject(t, s, first, c, "Healthy without a new sync", func(p projectStatus) bool { return p.LastSync.Health == "Healthy" })
	t.Logf("health change reported %s after the status update", time.Since(start).Round(time.Millisecond))

	// A failed sync is retried with backoff without a new commit: an
	// object made by hand is refused until someone deletes it.
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm-hand"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c = commit("claim cm-hand", map[string]string{"manifests/hand.yaml": configMap("cm-hand", "git")})
	p = waitProject(t, s, first, c, "failed with a retry planned", resultIs("failed"))
	if p.LastSync.Attempts != 1 || p.LastSync.NextRetryAt.IsZero() || time.Until(p.LastSync.NextRetryAt) > 10*time.Second {
		t.Errorf("retry: attempts %d, next retry at %v", p.LastSync.Attempts, p.LastSync.NextRetryAt)
	}
	if err := cms.Delete(ctx, "cm-hand", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p = waitProject(t, s, first, c, "synced by a retry", resultIs("synced"))
	if cm, err := cms.Get(ctx, "cm-hand", metav1.GetOptions{}); err != nil || cm.Data["value"] != "git" || p.LastSync.Attempts != 0 || !p.LastSync.NextRetryAt.IsZero() {
		t.Errorf("after the retry: %v %v, %+v", cm, err, p.LastSync)
	}
}

// A manifest project confined with service_account cannot escalate: its
// commit with a ClusterRoleBinding to cluster-admin is refused whole, on
// the real binaries.
func TestGitOpsServiceAccount(t *testing.T) {
	ns := namespace(t)
	ctx := t.Context()
	rbac := cp.Clientset().RbacV1()
	if _, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"*"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf("gitops:\n  manifest_projects:\n  - id: %s\n    default_namespace: %s\n    service_account: deployer\n    paths:\n    - glob: '/manifests/**/*.yaml'\n    prune_propagation_policy: background\n", stack.ConfigProject, ns)
	s := newStack(t, config, "--gitops-reconcile-period=1h")
	name := stack.ConfigProject + "@" + ns
	crb := "escalate-" + ns
	c, err := s.Commit("escalate", map[string]string{
		"manifests/app.yaml":  configMap("app", "1"),
		"manifests/rbac.yaml": fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: %s}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n- {kind: ServiceAccount, name: deployer, namespace: %s}\n", crb, ns),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := waitProject(t, s, name, c, "stalled", resultIs("stalled"))
	if !strings.Contains(p.LastSync.Reason, "/manifests/rbac.yaml: document 1: ClusterRoleBinding.rbac.authorization.k8s.io "+crb) || !strings.Contains(p.LastSync.Reason, "forbidden") {
		t.Errorf("reason: %q", p.LastSync.Reason)
	}
	if _, err := rbac.ClusterRoleBindings().Get(ctx, crb, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ClusterRoleBinding exists (%v)", err)
		_ = rbac.ClusterRoleBindings().Delete(ctx, crb, metav1.DeleteOptions{})
	}
	if _, err := cp.Clientset().CoreV1().ConfigMaps(ns).Get(ctx, "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ConfigMap of the refused commit was applied (%v)", err)
	}
	c, err = s.Commit("within its rights", map[string]string{"manifests/rbac.yaml": ""})
	if err != nil {
		t.Fatal(err)
	}
	waitProject(t, s, name, c, "synced", resultIs("synced"))
	if _, err := cp.Clientset().CoreV1().ConfigMaps(ns).Get(ctx, "app", metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap app: %v", err)
	}
}
