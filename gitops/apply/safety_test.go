package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// gadgetCRD defines a kind no other test uses (CRDs are cluster-wide).
const gadgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.safety.example.com}
spec:
  group: safety.example.com
  scope: Namespaced
  names: {kind: Gadget, plural: gadgets, singular: gadget, listKind: GadgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
`

var gadgetGVR = schema.GroupVersionResource{Group: "safety.example.com", Version: "v1", Resource: "gadgets"}

// A typo'd glob on a project with a Namespace, a CRD and custom objects:
// kas sends the files the globs select (none, or only some), and nothing
// is pruned.
func TestTypoGlobPrunesNothing(t *testing.T) {
	ctx := context.Background()
	a := newApplier(t, "agent1")
	nsName := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + fmt.Sprint(time.Now().UnixNano()%100000)
	files := []File{
		{Path: "/manifests/crds/gadget.yaml", Data: []byte(gadgetCRD)},
		{Path: "/manifests/app/ns.yaml", Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + nsName + "}\n")},
		{Path: "/manifests/app/app.yaml", Data: []byte(configMap("settings", map[string]string{"k": "1"}, "  namespace: "+nsName+"\n") +
			"---\napiVersion: safety.example.com/v1\nkind: Gadget\nmetadata: {name: g1, namespace: " + nsName + "}\nspec: {size: 1}\n")},
	}
	p := testProject("group/platform", nsName)
	p.Paths = []string{"/manifests/**/*.yaml"}
	res := a.SyncFiles(ctx, p, "c1", files)
	if res.Failed || res.Applied != 4 {
		t.Fatalf("first sync: %+v", res)
	}
	stillThere := func(when string) {
		t.Helper()
		if _, err := cp.Clientset().CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{}); err != nil {
			t.Errorf("%s: namespace: %v", when, err)
		}
		if getCM(t, nsName, "settings") == nil {
			t.Errorf("%s: ConfigMap settings pruned", when)
		}
		if _, err := dynamicClient(t).Resource(gadgetGVR).Namespace(nsName).Get(ctx, "g1", metav1.GetOptions{}); err != nil {
			t.Errorf("%s: Gadget g1: %v", when, err)
		}
		crd := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
		if o, err := dynamicClient(t).Resource(crd).Get(ctx, "gadgets.safety.example.com", metav1.GetOptions{}); err != nil || o.GetDeletionTimestamp() != nil {
			t.Errorf("%s: CRD: %v (deleting: %v)", when, err, err == nil && o.GetDeletionTimestamp() != nil)
		}
	}

	// "/manifest/**" for "/manifests/**": kas selects no file.
	typo := p
	typo.Paths = []string{"/manifest/**/*.yaml"}
	res = a.SyncFiles(ctx, typo, "c2", nil)
	if !res.Failed || res.Failure != FailureNoManifests || res.Pruned != 0 ||
		!strings.Contains(res.Reason, `no manifests matched: paths "/manifest/**/*.yaml" select no file`) {
		t.Errorf("typo'd glob: %+v, want no_manifests_matched naming the glob", res)
	}
	stillThere("after a typo'd glob")

	// One of two globs is wrong: only the app files come; the CRD must not
	// be pruned (with it every Gadget in the cluster).
	half := p
	half.Paths = []string{"/manifests/app/*.yaml", "/manifest/crds/*.yaml"}
	res = a.SyncFiles(ctx, half, "c3", files[1:])
	if !res.Failed || res.Failure != FailureNoManifests || !strings.Contains(res.Reason, `"/manifest/crds/*.yaml"`) {
		t.Errorf("one glob wrong: %+v, want no_manifests_matched naming /manifest/crds/*.yaml", res)
	}
	stillThere("after one wrong glob")

	// Files that hold no object (only comments) are empty too.
	res = a.SyncFiles(ctx, p, "c4", []File{{Path: "/manifests/app/ns.yaml", Data: []byte("# moved elsewhere\n")}})
	if res.Failure != FailureNoManifests || !strings.Contains(res.Reason, "hold no object") {
		t.Errorf("empty files: %+v", res)
	}
	// Every object left out by resource filters is empty too.
	filtered := p
	filtered.ResourceInclusions = []Filter{{APIGroups: []string{"nothing.example.com"}, Kinds: []string{"*"}}}
	res = a.SyncFiles(ctx, filtered, "c5", files)
	if res.Failure != FailureNoManifests || res.Skipped != 4 {
		t.Errorf("all filtered out: %+v", res)
	}
	stillThere("after empty commits")

	// The same project still syncs normally afterwards.
	res = a.SyncFiles(ctx, p, "c1", files)
	if res.Failed || res.Unchanged != 4 {
		t.Errorf("resync: %+v", res)
	}
}

// allow_empty: true is the opt-in: an empty commit prunes everything.
func TestAllowEmptyPrunes(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/empty", ns)
	p.Paths = []string{"/manifests/*.yaml"}
	res := a.SyncFiles(ctx, p, "c1", []File{{Path: "/manifests/a.yaml", Data: []byte(configMap("a", nil, ""))}})
	if res.Failed {
		t.Fatalf("%+v", res)
	}
	p.AllowEmpty = true
	res = a.SyncFiles(ctx, p, "c2", nil)
	if res.Failed || res.Pruned != 1 || getCM(t, ns, "a") != nil {
		t.Errorf("allow_empty: %+v, want a pruned", res)
	}
}

const webDeployment = `apiVersion: apps/v1
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

// One object the API server rejects stops the whole commit: the valid
// changes are not applied and the removed file is not pruned.
func TestPreCheckStopsWholeCommit(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/app", ns)
	res := a.SyncFiles(ctx, p, "c1", []File{
		{Path: "/manifests/config.yaml", Data: []byte(configMap("settings", map[string]string{"k": "1"}, ""))},
		{Path: "/manifests/old.yaml", Data: []byte(configMap("old", nil, ""))},
		{Path: "/manifests/web.yaml", Data: []byte(fmt.Sprintf(webDeployment, "1"))},
	})
	if res.Failed || res.Applied != 3 {
		t.Fatalf("c1: %+v", res)
	}
	c2 := []File{
		{Path: "/manifests/config.yaml", Data: []byte(configMap("settings", map[string]string{"k": "2"}, "") + "---\n" + configMap("added", nil, ""))},
		{Path: "/manifests/web.yaml", Data: []byte(configMap("web-config", nil, "") + "---\n" + fmt.Sprintf(webDeployment, `"abc"`))},
	}
	start := time.Now()
	res = a.SyncFiles(ctx, p, "c2", c2)
	t.Logf("c2 (pre-check) in %s: %+v", time.Since(start).Round(time.Millisecond), res)
	if !res.Failed || res.Failure != FailureStalled || res.Applied != 0 || res.Pruned != 0 ||
		!strings.Contains(res.Reason, "/manifests/web.yaml: document 2: Deployment.apps "+ns+"/web: ") ||
		!strings.Contains(res.Reason, "nothing was applied or pruned") {
		t.Errorf("c2: %+v, want stalled, nothing applied or pruned, the reason naming /manifests/web.yaml document 2 and Deployment %s/web", res, ns)
	}
	if got := getCM(t, ns, "settings").Object["data"].(map[string]any)["k"]; got != "1" {
		t.Errorf("settings changed to %v by a rejected commit", got)
	}
	if getCM(t, ns, "added") != nil || getCM(t, ns, "web-config") != nil {
		t.Error("an object of the rejected commit was created")
	}
	if getCM(t, ns, "old") == nil {
		t.Error("old was pruned by a rejected commit")
	}

	// pre_check: false: the valid changes go through, the bad object fails
	// at apply time.
	unchecked := p
	unchecked.SkipPreCheck = true
	res = a.SyncFiles(ctx, unchecked, "c2", c2)
	if !res.Failed || res.Failure != FailureObjects || getCM(t, ns, "added") == nil || getCM(t, ns, "old") != nil {
		t.Errorf("pre_check off: %+v, want the valid changes applied, old pruned, failed on the Deployment", res)
	}

	// dry_run_strategy keeps its meaning: report, write nothing.
	dry := p
	dry.DryRunStrategy = "server"
	res = a.SyncFiles(ctx, dry, "c3", []File{{Path: "/manifests/config.yaml", Data: []byte(configMap("dry", nil, ""))}})
	if getCM(t, ns, "dry") != nil || res.Applied != 1 {
		t.Errorf("dry run: %+v", res)
	}
}

// A pruned object held by a finalizer is reported and does not hold back
// the next commit.
func TestStuckPruneDoesNotBlock(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/app", ns)
	p.PruneTimeout = time.Hour
	res := a.SyncFiles(ctx, p, "c1", []File{{Path: "/m.yaml", Data: []byte(configMap("held", nil, "") + "---\n" + configMap("keep", nil, ""))}})
	if res.Failed {
		t.Fatalf("c1: %+v", res)
	}
	// Something else (a controller) holds the object with a finalizer.
	const finalizer = "example.com/hold"
	patch := fmt.Appendf(nil, `{"metadata":{"finalizers":[%q]}}`, finalizer)
	if _, err := cp.Clientset().CoreV1().ConfigMaps(ns).Patch(ctx, "held", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cp.Clientset().CoreV1().ConfigMaps(ns).Patch(context.Background(), "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})

	start := time.Now()
	res = a.SyncFiles(ctx, p, "c2", []File{{Path: "/m.yaml", Data: []byte(configMap("keep", nil, ""))}})
	took := time.Since(start)
	t.Logf("c2 in %s: %+v", took.Round(time.Millisecond), res)
	if res.Failed || res.Pruned != 1 || len(res.PendingPrunes) != 1 {
		t.Fatalf("c2: %+v, want synced, 1 pruned, 1 pending", res)
	}
	pp := res.PendingPrunes[0]
	if pp.Object != "ConfigMap "+ns+"/held" || !slices.Equal(pp.Finalizers, []string{finalizer}) || time.Since(pp.Since) > time.Minute {
		t.Errorf("pending prune %+v, want ConfigMap %s/held waiting for %s since just now", pp, ns, finalizer)
	}
	if took > 15*time.Second {
		t.Errorf("c2 took %s: it waited for the held object", took)
	}

	// A newer commit is applied at once, and the held object is still
	// reported.
	start = time.Now()
	res = a.SyncFiles(ctx, p, "c3", []File{{Path: "/m.yaml", Data: []byte(configMap("keep", nil, "") + "---\n" + configMap("newer", nil, ""))}})
	took = time.Since(start)
	t.Logf("c3 in %s: %+v", took.Round(time.Millisecond), res)
	if res.Failed || res.Applied != 1 || res.Pruned != 0 || getCM(t, ns, "newer") == nil || len(res.PendingPrunes) != 1 || took > 15*time.Second {
		t.Errorf("c3: %+v in %s, want newer applied at once and held still pending", res, took)
	}

	// The finalizer goes: nothing is pending any more.
	if _, err := cp.Clientset().CoreV1().ConfigMaps(ns).Patch(ctx, "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForCache(t, a, "", "ConfigMap", ns, "held", "")
	res = a.SyncFiles(ctx, p, "c3", []File{{Path: "/m.yaml", Data: []byte(configMap("keep", nil, "") + "---\n" + configMap("newer", nil, ""))}})
	if res.Failed || len(res.PendingPrunes) != 0 {
		t.Errorf("after the finalizer went: %+v", res)
	}
}

// Objects applied by GitLab's agent (a cli-utils inventory) are taken over
// only with inventory_policy adopt_all.
func TestAdoptCLIUtilsInventory(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	old, err := cp.Clientset().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "from-gitlab", Annotations: map[string]string{AnnotationOwningInventory: "inventory-12345"}},
		Data:       map[string]string{"k": "gitlab"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForCache(t, a, "", "ConfigMap", ns, "from-gitlab", old.ResourceVersion)
	files := []File{{Path: "/m.yaml", Data: []byte(configMap("from-gitlab", map[string]string{"k": "git"}, ""))}}
	for _, policy := range []string{"must_match", "adopt_if_no_inventory"} {
		p := testProject("group/app", ns)
		p.InventoryPolicy = policy
		res := a.SyncFiles(ctx, p, "c1", files)
		if !res.Failed || !strings.Contains(res.Reason, `belongs to the cli-utils inventory "inventory-12345"`) || !strings.Contains(res.Reason, "adopt_all") {
			t.Errorf("%s: %+v, want refused naming the inventory and adopt_all", policy, res)
		}
		if getCM(t, ns, "from-gitlab").Object["data"].(map[string]any)["k"] != "gitlab" {
			t.Errorf("%s took the object over", policy)
		}
	}
	p := testProject("group/app", ns)
	p.InventoryPolicy = "adopt_all"
	res := a.SyncFiles(ctx, p, "c1", files)
	cm := getCM(t, ns, "from-gitlab")
	if res.Failed || cm.Object["data"].(map[string]any)["k"] != "git" || cm.GetAnnotations()[AnnotationManagedBy] != "agent1/group/app/"+ns {
		t.Errorf("adopt_all: %+v, object %v", res, cm.Object)
	}
}

// config.kubernetes.io/depends-on orders the apply: a dependent waits in a
// later wave.
func TestDependsOn(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/app", ns)
	dep := func(ref string) string { return "  annotations:\n    config.kubernetes.io/depends-on: " + ref + "\n" }
	files := []File{{Path: "/m.yaml", Data: []byte(
		configMap("c", nil, dep("/namespaces/"+ns+"/ConfigMap/b")) + "---\n" +
			configMap("b", nil, dep("/namespaces/"+ns+"/ConfigMap/a, rbac.authorization.k8s.io/ClusterRole/not-in-commit")) + "---\n" +
			configMap("a", nil, ""))}}
	res := a.SyncFiles(ctx, p, "c1", files)
	if res.Failed || res.Applied != 3 {
		t.Fatalf("%+v", res)
	}
	created := map[string]time.Time{}
	for _, n := range []string{"a", "b", "c"} {
		cm := getCM(t, ns, n)
		created[n] = cm.GetCreationTimestamp().Time
		want := map[string]string{"a": "", "b": "1", "c": "2"}[n]
		if got := cm.GetAnnotations()[annotationSyncWave]; got != want {
			t.Errorf("%s: sync-wave %q, want %q", n, got, want)
		}
	}
	if created["b"].Before(created["a"]) || created["c"].Before(created["b"]) {
		t.Errorf("apply order: %v", created)
	}

	cycle := []File{{Path: "/m.yaml", Data: []byte(
		configMap("cx", nil, dep("/namespaces/"+ns+"/ConfigMap/cy")) + "---\n" + configMap("cy", nil, dep("/namespaces/"+ns+"/ConfigMap/cx")))}}
	res = a.SyncFiles(ctx, p, "c2", cycle)
	if res.Failure != FailureStalled || !strings.Contains(res.Reason, "depends-on cycle") || getCM(t, ns, "a") == nil {
		t.Errorf("cycle: %+v, want stalled, nothing pruned", res)
	}
	if _, err := cp.Clientset().CoreV1().ConfigMaps(ns).Get(ctx, "cx", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("cx applied despite the cycle: %v", err)
	}
}

func TestFailureOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Failure
	}{
		{nil, FailureNone},
		{&ParseError{Path: "/a.yaml", Err: errors.New("x")}, FailureStalled},
		{fmt.Errorf("wrapped: %w", &CheckError{}), FailureStalled},
		{fmt.Errorf("%w: x", ErrNoManifests), FailureNoManifests},
		{fmt.Errorf("%w: x", ErrDependencyCycle), FailureStalled},
		{errors.New("connection refused"), FailureRetryable},
	} {
		if got := failureOf(c.err); got != c.want {
			t.Errorf("failureOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// What docs/gitops.md says is never pruned, besides other projects'
// objects: objects with owner references, and objects annotated
// Prune=false.
func TestNeverPruned(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/app", ns)
	res := a.SyncFiles(ctx, p, "c1", []File{{Path: "/m.yaml", Data: []byte(
		configMap("owner", nil, "") + "---\n" +
			configMap("owned", nil, "") + "---\n" +
			configMap("keep-me", nil, "  annotations:\n    argocd.argoproj.io/sync-options: Prune=false\n"))}})
	if res.Failed {
		t.Fatalf("%+v", res)
	}
	owner := getCM(t, ns, "owner")
	ref := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"owner","uid":%q}]}}`, owner.GetUID())
	owned, err := cp.Clientset().CoreV1().ConfigMaps(ns).Patch(ctx, "owned", types.MergePatchType, []byte(ref), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForCache(t, a, "", "ConfigMap", ns, "owned", owned.ResourceVersion)
	res = a.SyncFiles(ctx, p, "c2", []File{{Path: "/m.yaml", Data: []byte(configMap("owner", nil, ""))}})
	if res.Failed || res.Pruned != 0 {
		t.Errorf("%+v, want nothing pruned", res)
	}
	if getCM(t, ns, "owned") == nil || getCM(t, ns, "keep-me") == nil {
		t.Error("an object with an owner reference or Prune=false was pruned")
	}
}

// A project confined to a service account can do only what RBAC lets that
// account do: a commit that creates a ClusterRoleBinding to cluster-admin
// is refused (by the pre-check, and at apply time without it).
func TestServiceAccountConfines(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
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
	crbName := "escalate-" + ns
	escalate := fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: %s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: ServiceAccount, name: deployer, namespace: %s}
`, crbName, ns)
	crbGone := func(when string) {
		t.Helper()
		if _, err := rbac.ClusterRoleBindings().Get(ctx, crbName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s: the ClusterRoleBinding exists (or get failed: %v)", when, err)
			_ = rbac.ClusterRoleBindings().Delete(ctx, crbName, metav1.DeleteOptions{})
		}
	}

	a := newApplier(t, "agent1")
	p := testProject("group/tenant", ns)
	p.ServiceAccount = ns + "/deployer"
	files := []File{
		{Path: "/manifests/app.yaml", Data: []byte(configMap("app", nil, ""))},
		{Path: "/manifests/rbac.yaml", Data: []byte(escalate)},
	}
	res := a.SyncFiles(ctx, p, "c1", files)
	if !res.Failed || res.Failure != FailureStalled || !strings.Contains(res.Reason, "/manifests/rbac.yaml: document 1: ClusterRoleBinding.rbac.authorization.k8s.io "+crbName) ||
		!strings.Contains(res.Reason, "forbidden") {
		t.Errorf("confined project creating a ClusterRoleBinding: %+v, want stalled, forbidden, naming the file", res)
	}
	crbGone("pre-check")
	if getCM(t, ns, "app") != nil {
		t.Error("the rest of the refused commit was applied")
	}

	// Without the pre-check the apply itself is refused.
	unchecked := p
	unchecked.SkipPreCheck = true
	res = a.SyncFiles(ctx, unchecked, "c1", files)
	if !res.Failed || !strings.Contains(res.Reason, "forbidden") || getCM(t, ns, "app") == nil {
		t.Errorf("pre_check off: %+v, want the ConfigMap applied and the ClusterRoleBinding forbidden", res)
	}
	crbGone("apply")

	// What the account may do works, prunes included.
	res = a.SyncFiles(ctx, p, "c2", files[:1])
	if res.Failed {
		t.Errorf("allowed commit: %+v", res)
	}
	res = a.SyncFiles(ctx, p, "c3", []File{{Path: "/manifests/app.yaml", Data: []byte(configMap("app2", nil, ""))}})
	if res.Failed || res.Pruned != 1 || getCM(t, ns, "app") != nil {
		t.Errorf("prune as the service account: %+v", res)
	}
}

// A custom object of a CRD that the same commit creates is judged by that
// CRD's schema before anything is written.
func TestPreCheckNewCRDSchema(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/widgets", ns)
	crd := strings.NewReplacer("gadgets", "doohickeys", "Gadget", "Doohickey", "gadget", "doohickey").Replace(gadgetCRD)
	files := func(size string) []File {
		return []File{
			{Path: "/crds/doohickey.yaml", Data: []byte(crd)},
			{Path: "/app/cm.yaml", Data: []byte(configMap("app", nil, ""))},
			{Path: "/app/d.yaml", Data: []byte("apiVersion: safety.example.com/v1\nkind: Doohickey\nmetadata: {name: d1}\nspec: {size: " + size + "}\n")},
		}
	}
	res := a.SyncFiles(ctx, p, "c1", files(`"big"`))
	if !res.Failed || res.Failure != FailureStalled || !strings.Contains(res.Reason, "/app/d.yaml: document 1: Doohickey.safety.example.com "+ns+"/d1: invalid by the CustomResourceDefinition in this commit") ||
		!strings.Contains(res.Reason, "spec.size") {
		t.Errorf("%+v, want stalled naming /app/d.yaml and spec.size", res)
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dynamicClient(t).Resource(crdGVR).Get(ctx, "doohickeys.safety.example.com", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the CRD of the rejected commit was applied: %v", err)
	}
	if getCM(t, ns, "app") != nil {
		t.Error("the ConfigMap of the rejected commit was applied")
	}
	res = a.SyncFiles(ctx, p, "c2", files("3"))
	if res.Failed || res.Applied != 3 {
		t.Errorf("valid commit: %+v", res)
	}
}
