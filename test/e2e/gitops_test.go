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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/stack"
)

// syncReport is a project's last sync as kas's status API serves it.
type syncReport struct {
	CommitID  string `json:"commit_id"`
	Result    string `json:"result"`
	Reason    string `json:"reason"`
	Applied   int    `json:"applied"`
	Pruned    int    `json:"pruned"`
	Unchanged int    `json:"unchanged"`
}

// lastSync asks kas for the agent's last sync of a project.
func lastSync(t *testing.T, s *stack.Stack, project string) *syncReport {
	t.Helper()
	resp, err := http.Get("http://" + s.ObsAddr + "/api/v1/agents/" + stack.AgentName)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Projects []struct {
			ID       string      `json:"id"`
			LastSync *syncReport `json:"last_sync"`
		} `json:"projects"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Projects {
		if p.ID == project && p.LastSync != nil {
			return p.LastSync
		}
	}
	return nil
}

// waitSync waits until kas reports a sync of commit with the given result.
func waitSync(t *testing.T, s *stack.Stack, commit, result string) *syncReport {
	t.Helper()
	var r *syncReport
	testutil.Eventually(t, 60*time.Second, "sync of "+commit[:8]+" to be "+result, func() bool {
		r = lastSync(t, s, stack.ConfigProject)
		return r != nil && r.CommitID == commit && r.Result == result
	})
	return r
}

func gitopsConfig(namespaces ...string) string {
	var b strings.Builder
	b.WriteString("gitops:\n  manifest_projects:\n")
	for i, ns := range namespaces {
		dir := "manifests"
		if i > 0 {
			dir = "other"
		}
		fmt.Fprintf(&b, "  - id: %s\n    default_namespace: %s\n    paths:\n    - glob: '/%s/**/*.yaml'\n    prune_propagation_policy: background\n", stack.ConfigProject, ns, dir)
	}
	return b.String()
}

func configMap(name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  value: %q\n", name, value)
}

// The GitOps loop on the real binaries and the real API server: apply,
// update, rename, prune, a broken file, an object made by hand, drift, a
// second project, and removing a project from the config.
func TestGitOps(t *testing.T) {
	ns := namespace(t)
	ns2 := namespace(t)
	s := newStack(t, gitopsConfig(ns), "--gitops-reconcile-period=2s")
	cms := cp.Clientset().CoreV1().ConfigMaps(ns)
	get := func(name string) *corev1.ConfigMap {
		cm, err := cms.Get(t.Context(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return cm
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

	// Apply.
	c := commit("two configmaps", map[string]string{"manifests/a.yaml": configMap("cm-a", "1"), "manifests/b.yaml": configMap("cm-b", "1")})
	r := waitSync(t, s, c, "synced")
	if get("cm-a") == nil || get("cm-b") == nil || r.Applied != 2 {
		t.Fatalf("after the first commit: %+v", r)
	}
	uidB := get("cm-b").UID

	// Update, and rename a file without changing its object.
	c = commit("update and rename", map[string]string{"manifests/a.yaml": configMap("cm-a", "2"), "manifests/b.yaml": "", "manifests/renamed/b.yaml": configMap("cm-b", "1")})
	r = waitSync(t, s, c, "synced")
	if v := get("cm-a").Data["value"]; v != "2" {
		t.Errorf("cm-a value %q after update", v)
	}
	if get("cm-b") == nil || get("cm-b").UID != uidB || r.Pruned != 0 {
		t.Errorf("rename recreated or pruned cm-b: %+v", r)
	}

	// Prune.
	c = commit("remove a", map[string]string{"manifests/a.yaml": ""})
	r = waitSync(t, s, c, "synced")
	testutil.Eventually(t, 10*time.Second, "cm-a pruned", func() bool { return get("cm-a") == nil })

	// A broken file fails the sync (stalled: it fails the same way until
	// the next commit), names the file, applies and prunes nothing.
	c = commit("broken", map[string]string{"manifests/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n", "manifests/d.yaml": configMap("cm-d", "1"), "manifests/renamed/b.yaml": ""})
	r = waitSync(t, s, c, "stalled")
	if !strings.Contains(r.Reason, "/manifests/bad.yaml") {
		t.Errorf("failure reason does not name the file: %q", r.Reason)
	}
	if get("cm-d") != nil || get("cm-b") == nil {
		t.Errorf("a broken commit applied or pruned something: cm-d %v, cm-b %v", get("cm-d") != nil, get("cm-b") != nil)
	}
	if !strings.Contains(s.AgentLog(), "/manifests/bad.yaml") {
		t.Error("agentk did not log the broken file")
	}

	// An object made by hand is not taken over (inventory_policy must_match).
	if _, err := cms.Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm-hand"}, Data: map[string]string{"value": "by hand"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c = commit("fix, and claim cm-hand", map[string]string{"manifests/bad.yaml": "", "manifests/renamed/b.yaml": configMap("cm-b", "1"), "manifests/hand.yaml": configMap("cm-hand", "from git")})
	r = waitSync(t, s, c, "failed")
	if !strings.Contains(r.Reason, "cm-hand") {
		t.Errorf("reason does not name the object it would not take over: %q", r.Reason)
	}
	if v := get("cm-hand").Data["value"]; v != "by hand" {
		t.Errorf("cm-hand was taken over: value %q", v)
	}
	c = commit("leave cm-hand alone", map[string]string{"manifests/hand.yaml": ""})
	waitSync(t, s, c, "synced")
	if get("cm-d") == nil || get("cm-hand") == nil {
		t.Fatal("cm-d not applied, or cm-hand pruned")
	}

	// Drift is put back at the next reconcile.
	b := get("cm-b")
	b.Data["value"] = "changed by hand"
	if _, err := cms.Update(t.Context(), b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "drift put back", func() bool { return get("cm-b").Data["value"] == "1" })

	// A second project in the same agent: neither prunes the other.
	commit("project two's files", map[string]string{"other/x.yaml": configMap("cm-x", "1")})
	c = commit("second project", map[string]string{stack.AgentConfigPath(): gitopsConfig(ns, ns2)})
	testutil.Eventually(t, 60*time.Second, "cm-x in the second namespace", func() bool {
		_, err := cp.Clientset().CoreV1().ConfigMaps(ns2).Get(t.Context(), "cm-x", metav1.GetOptions{})
		return err == nil
	})
	testutil.Eventually(t, 60*time.Second, "both projects synced at "+c[:8], func() bool {
		ps := projectsOf(t, s)
		for _, p := range ps {
			if p.LastSync == nil || p.LastSync.CommitID != c || p.LastSync.Result != "synced" {
				return false
			}
		}
		return len(ps) == 2
	})
	if get("cm-b") == nil || get("cm-d") == nil {
		t.Fatal("the second project pruned the first's objects")
	}

	// Removing the second project from the config prunes its objects (prune
	// is on), and only those.
	commit("drop the second project", map[string]string{stack.AgentConfigPath(): gitopsConfig(ns)})
	testutil.Eventually(t, 60*time.Second, "cm-x pruned with its project", func() bool {
		_, err := cp.Clientset().CoreV1().ConfigMaps(ns2).Get(t.Context(), "cm-x", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if get("cm-b") == nil || get("cm-d") == nil {
		t.Fatal("removing the second project pruned the first's objects")
	}
}

// The kube-prometheus manifests (95 files, CRDs up to 800 KB, a 1 MB
// ConfigMap list) apply through GitOps, every object is there, and a
// no-op resync applies nothing.
func TestGitOpsKubePrometheus(t *testing.T) {
	src := filepath.Join("..", "..", "..", "shared", "testdata", "kube-prometheus", "manifests")
	files := map[string]string{}
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		files[filepath.Join("kube-prometheus", rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := "gitops:\n  manifest_projects:\n  - id: " + stack.ConfigProject + "\n    paths:\n    - glob: '/kube-prometheus/**/*.yaml'\n    prune_propagation_policy: background\n"
	s := newStack(t, cfg, "--gitops-reconcile-period=3s")
	c, err := s.Commit("kube-prometheus", files)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := waitSync(t, s, c, "synced")
	t.Logf("kube-prometheus (%d files) synced in about %v: %+v", len(files), time.Since(start).Round(100*time.Millisecond), r)
	// Every object is there: ask the API server for each kind through kas.
	for _, check := range [][]string{
		{"get", "crd", "prometheuses.monitoring.coreos.com", "alertmanagers.monitoring.coreos.com", "servicemonitors.monitoring.coreos.com"},
		{"get", "-n", "monitoring", "deployment", "prometheus-operator", "kube-state-metrics", "grafana", "blackbox-exporter", "prometheus-adapter"},
		{"get", "-n", "monitoring", "prometheus", "k8s"},
		{"get", "-n", "monitoring", "alertmanager", "main"},
		{"get", "-n", "monitoring", "configmap", "grafana-dashboards"},
	} {
		mustKubectl(t, s.Kubeconfig, "", check...)
	}
	if r.Applied < 100 {
		t.Errorf("applied %d objects, want every object of kube-prometheus", r.Applied)
	}
	total := r.Applied
	// The next reconcile is a no-op.
	var noop *syncReport
	testutil.Eventually(t, 30*time.Second, "a no-op resync", func() bool {
		noop = lastSync(t, s, stack.ConfigProject)
		return noop.Unchanged > 0
	})
	if noop.Applied != 0 || noop.Unchanged != total {
		t.Errorf("no-op resync: %+v, want 0 applied and %d unchanged", noop, total)
	}
}
