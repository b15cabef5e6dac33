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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example.invalid/web:1
        resources:
          requests: {cpu: 100m, memory: 64Mi}
`

func TestApplyUpdatePruneNoop(t *testing.T) {
	ns, err := cp.CreateNamespace(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/app", ns)

	v1 := []File{
		{Path: "/manifests/config.yaml", Data: []byte(configMap("one", map[string]string{"k": "1"}, "") + "---\n" + configMap("two", map[string]string{"a": "x", "b": "y"}, ""))},
		{Path: "/manifests/web.yaml", Data: []byte(deployment)},
	}
	res := mustSync(t, a, p, "c1", mustParse(t, a, ns, v1...))
	wantCounts(t, res, 3, 0, 0)
	if res.Failed || res.Health != "Progressing" || res.Commit != "c1" {
		t.Errorf("result %+v: want not failed, health Progressing (no controller-manager), commit c1", res)
	}
	one := getCM(t, ns, "one")
	if one == nil {
		t.Fatal("ConfigMap one not created")
	}
	if got := one.GetAnnotations()[AnnotationManagedBy]; got != "agent1/group/app/"+ns {
		t.Errorf("mark = %q", got)
	}
	var ssa bool
	for _, mf := range one.GetManagedFields() {
		ssa = ssa || (mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply)
	}
	if !ssa {
		t.Errorf("ConfigMap one not server-side applied by %q: %+v", FieldManager, one.GetManagedFields())
	}

	// A no-op resync sends nothing.
	res = mustSync(t, a, p, "c1", mustParse(t, a, ns, v1...))
	wantCounts(t, res, 0, 0, 3)

	// Update: a changed value, and a removed key (only the hash shows it).
	v2 := []File{
		{Path: "/manifests/config.yaml", Data: []byte(configMap("one", map[string]string{"k": "2"}, "") + "---\n" + configMap("two", map[string]string{"a": "x"}, ""))},
		{Path: "/manifests/web.yaml", Data: []byte(deployment)},
	}
	res = mustSync(t, a, p, "c2", mustParse(t, a, ns, v2...))
	wantCounts(t, res, 2, 0, 1)
	if got := getCM(t, ns, "one").Object["data"]; got.(map[string]any)["k"] != "2" {
		t.Errorf("one data = %v", got)
	}
	if got := getCM(t, ns, "two").Object["data"].(map[string]any); len(got) != 1 {
		t.Errorf("two data = %v, want only a (b removed from the manifest)", got)
	}

	// Prune: ConfigMap one is gone from the manifests.
	v3 := []File{
		{Path: "/manifests/config.yaml", Data: []byte(configMap("two", map[string]string{"a": "x"}, ""))},
		{Path: "/manifests/web.yaml", Data: []byte(deployment)},
	}
	res = mustSync(t, a, p, "c3", mustParse(t, a, ns, v3...))
	wantCounts(t, res, 0, 1, 2)
	if getCM(t, ns, "one") != nil {
		t.Error("ConfigMap one not pruned")
	}
	res = mustSync(t, a, p, "c3", mustParse(t, a, ns, v3...))
	wantCounts(t, res, 0, 0, 2)

	// Prune off: removed objects stay.
	noPrune := p
	noPrune.Prune = false
	res = mustSync(t, a, noPrune, "c4", mustParse(t, a, ns, v3[1]))
	if res.Pruned != 0 || getCM(t, ns, "two") == nil {
		t.Errorf("prune off: %+v, two exists: %v", res, getCM(t, ns, "two") != nil)
	}
}

func TestRenameFileKeepsObjects(t *testing.T) {
	ns, err := cp.CreateNamespace(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/app", ns)
	data := []byte(configMap("one", map[string]string{"k": "1"}, "") + "---\n" + configMap("two", map[string]string{"k": "2"}, ""))
	mustSync(t, a, p, "c1", mustParse(t, a, ns, File{Path: "/manifests/old.yaml", Data: data}))
	uid := getCM(t, ns, "one").GetUID()
	res := mustSync(t, a, p, "c2", mustParse(t, a, ns, File{Path: "/manifests/renamed/new.yml", Data: data}))
	wantCounts(t, res, 0, 0, 2)
	if got := getCM(t, ns, "one").GetUID(); got != uid {
		t.Errorf("ConfigMap one was recreated: uid %s, was %s", got, uid)
	}
}

func TestBrokenFileChangesNothing(t *testing.T) {
	ns, err := cp.CreateNamespace(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/app", ns)
	mustSync(t, a, p, "c1", mustParse(t, a, ns,
		File{Path: "/manifests/keep.yaml", Data: []byte(configMap("keep", map[string]string{"k": "1"}, ""))}))

	// The next commit drops keep.yaml (which would prune it), adds an
	// object, and has a broken document.
	_, err = a.Parse([]File{
		{Path: "/manifests/new.yaml", Data: []byte(configMap("new", map[string]string{"k": "1"}, ""))},
		{Path: "/manifests/app.yaml", Data: []byte(configMap("fine", nil, "") + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n data: {}\n")},
	}, ns)
	var pe *ParseError
	if !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), "/manifests/app.yaml: document 2: ") {
		t.Fatalf("Parse error = %v, want a *ParseError for /manifests/app.yaml: document 2", err)
	}
	t.Logf("parse error: %v", err)
	// The agent syncs only what parses: nothing was applied, nothing pruned.
	if getCM(t, ns, "new") != nil || getCM(t, ns, "fine") != nil {
		t.Error("an object of the broken commit was applied")
	}
	if getCM(t, ns, "keep") == nil {
		t.Error("ConfigMap keep was pruned")
	}

	// Sync itself refuses objects of unknown kinds before doing anything.
	objs := mustParse(t, a, ns, File{Path: "/manifests/new.yaml", Data: []byte(configMap("new", nil, ""))})
	bad := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "nope.example.com/v1", "kind": "Nope", "metadata": map[string]any{"name": "n"}}}
	if _, err := a.Sync(context.Background(), p, "c3", append(objs, bad)); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Sync with an unknown kind: err = %v, want ErrUnknownKind", err)
	}
	if getCM(t, ns, "new") != nil || getCM(t, ns, "keep") == nil {
		t.Error("Sync with an unknown kind changed the cluster")
	}
}

func TestInventoryPolicy(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	byHand, err := cp.Clientset().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "taken"}, Data: map[string]string{"k": "hand"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForCache(t, a, "", "ConfigMap", ns, "taken", byHand.ResourceVersion)
	files := []File{{Path: "/manifests/cm.yaml", Data: []byte(configMap("taken", map[string]string{"k": "git"}, "") + "---\n" + configMap("other", map[string]string{"k": "git"}, ""))}}

	p := testProject("group/app", ns) // must_match by default
	res := mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
	if !res.Failed || !strings.Contains(res.Reason, "ConfigMap "+ns+"/taken") || !strings.Contains(res.Reason, "must_match") {
		t.Errorf("must_match: result %+v, want failed with a reason naming ConfigMap %s/taken and must_match", res, ns)
	}
	wantCounts(t, res, 1, 0, 0)
	taken := getCM(t, ns, "taken")
	if taken.Object["data"].(map[string]any)["k"] != "hand" || taken.GetAnnotations()[AnnotationManagedBy] != "" {
		t.Errorf("ConfigMap taken was taken over under must_match: %v", taken.Object)
	}
	if getCM(t, ns, "other") == nil {
		t.Error("ConfigMap other not applied")
	}

	// Another project's object is refused under adopt_if_no_inventory.
	q := testProject("group/other", ns)
	q.InventoryPolicy = "adopt_if_no_inventory"
	res = mustSync(t, a, q, "o1", mustParse(t, a, ns, File{Path: "/x.yaml", Data: []byte(configMap("other", map[string]string{"k": "q"}, ""))}))
	if !res.Failed || !strings.Contains(res.Reason, `managed by "agent1/group/app/`+ns+`"`) {
		t.Errorf("adopt_if_no_inventory on another project's object: %+v", res)
	}

	// adopt_if_no_inventory takes over the unmarked object.
	p.InventoryPolicy = "adopt_if_no_inventory"
	res = mustSync(t, a, p, "c2", mustParse(t, a, ns, files...))
	if res.Failed {
		t.Errorf("adopt_if_no_inventory: %+v", res)
	}
	wantCounts(t, res, 1, 0, 1)
	taken = getCM(t, ns, "taken")
	if taken.Object["data"].(map[string]any)["k"] != "git" || taken.GetAnnotations()[AnnotationManagedBy] == "" {
		t.Errorf("ConfigMap taken not adopted: %v", taken.Object)
	}

	// adopt_all takes over another project's object.
	q.InventoryPolicy = "adopt_all"
	res = mustSync(t, a, q, "o2", mustParse(t, a, ns, File{Path: "/x.yaml", Data: []byte(configMap("other", map[string]string{"k": "q"}, ""))}))
	wantCounts(t, res, 1, 0, 0)
	if got := getCM(t, ns, "other").GetAnnotations()[AnnotationManagedBy]; got != "agent1/group/other/"+ns || res.Failed {
		t.Errorf("adopt_all: mark %q, result %+v", got, res)
	}
}

func TestDriftIsPutBack(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/app", ns)
	files := []File{{Path: "/manifests/cm.yaml", Data: []byte(configMap("cm", map[string]string{"k": "git"}, "  labels: {team: a}\n"))}}
	mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))

	for _, edit := range []struct {
		name   string
		mutate func(cm *corev1.ConfigMap)
	}{
		{"changed value", func(cm *corev1.ConfigMap) { cm.Data["k"] = "hand" }},
		{"removed key", func(cm *corev1.ConfigMap) { delete(cm.Data, "k") }},
		{"changed label", func(cm *corev1.ConfigMap) { cm.Labels["team"] = "b" }},
	} {
		cm, err := cp.Clientset().CoreV1().ConfigMaps(ns).Get(ctx, "cm", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		edit.mutate(cm)
		cm, err = cp.Clientset().CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitForCache(t, a, "", "ConfigMap", ns, "cm", cm.ResourceVersion)
		res := mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
		if res.Applied != 1 {
			t.Errorf("%s: applied %d, want 1", edit.name, res.Applied)
		}
		got := getCM(t, ns, "cm")
		if got.Object["data"].(map[string]any)["k"] != "git" || got.GetLabels()["team"] != "a" {
			t.Errorf("%s: not put back: %v", edit.name, got.Object)
		}
	}
	res := mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
	wantCounts(t, res, 0, 0, 1)
}

func TestTwoProjectsNeverPruneEachOther(t *testing.T) {
	ns, err := cp.CreateNamespace(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	pa := testProject("group/a", ns)
	pb := testProject("group/b", ns)
	mustSync(t, a, pa, "a1", mustParse(t, a, ns, File{Path: "/a.yaml", Data: []byte(configMap("from-a", nil, ""))}))
	mustSync(t, a, pb, "b1", mustParse(t, a, ns, File{Path: "/b.yaml", Data: []byte(configMap("from-b", nil, ""))}))
	// The same project id with another default namespace is another project too.
	pa2 := testProject("group/a", "default")
	mustSync(t, a, pa2, "a2", mustParse(t, a, "default", File{Path: "/a.yaml", Data: []byte(configMap("from-a2-"+ns, nil, "  namespace: "+ns+"\n"))}))

	// An empty project prunes nothing unless it opts in.
	if _, err := a.Sync(context.Background(), pa, "a3", nil); !errors.Is(err, ErrNoManifests) {
		t.Errorf("Sync with no objects: err = %v, want ErrNoManifests", err)
	}
	if getCM(t, ns, "from-a") == nil {
		t.Fatal("from-a pruned by an empty sync without allow_empty")
	}
	// Project a removed everything (or was removed from the config).
	pa.AllowEmpty, pb.AllowEmpty = true, true
	res := mustSync(t, a, pa, "a3", nil)
	wantCounts(t, res, 0, 1, 0)
	if getCM(t, ns, "from-a") != nil {
		t.Error("from-a not pruned")
	}
	if getCM(t, ns, "from-b") == nil || getCM(t, ns, "from-a2-"+ns) == nil {
		t.Error("pruning project a deleted another project's object")
	}
	res = mustSync(t, a, pb, "b2", nil)
	wantCounts(t, res, 0, 1, 0)
	if getCM(t, ns, "from-a2-"+ns) == nil {
		t.Error("pruning project b deleted another project's object")
	}
}

func TestWavesAndHooks(t *testing.T) {
	ns, err := cp.CreateNamespace(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/app", ns)
	hookAnn := func(kind string) string { return "  annotations:\n    argocd.argoproj.io/hook: " + kind + "\n" }
	waveAnn := func(w string) string { return "  annotations:\n    argocd.argoproj.io/sync-wave: \"" + w + "\"\n" }
	files := []File{{Path: "/manifests/all.yaml", Data: []byte(strings.Join([]string{
		configMap("post", nil, hookAnn("PostSync")),
		configMap("wave2", nil, waveAnn("2")),
		configMap("wave1", nil, waveAnn("1")),
		configMap("wave0", nil, ""),
		configMap("pre", nil, hookAnn("PreSync")),
	}, "---\n"))}}
	res := mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
	if res.Failed || res.Applied != 5 {
		t.Fatalf("result %+v, want 5 applied", res)
	}
	var prev uint64
	for _, name := range []string{"pre", "wave0", "wave1", "wave2", "post"} {
		cm := getCM(t, ns, name)
		if cm == nil {
			t.Fatalf("%s missing", name)
		}
		rv := cm.GetResourceVersion()
		var n uint64
		for _, c := range rv {
			n = n*10 + uint64(c-'0')
		}
		if n <= prev {
			t.Errorf("%s applied out of order (resourceVersion %d after %d)", name, n, prev)
		}
		prev = n
	}
	// Nothing changed: hooks do not run again.
	res = mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
	wantCounts(t, res, 0, 0, 3)
}

func TestCRDAndCustomObjectsInOneSync(t *testing.T) {
	ns, err := cp.CreateNamespace(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	p := testProject("group/crd", ns)
	files := []File{
		{Path: "/manifests/widget.yaml", Data: []byte("apiVersion: sync.example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n")},
		{Path: "/manifests/crd.yaml", Data: []byte(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.sync.example.com}
spec:
  group: sync.example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
`)},
	}
	res := mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
	wantCounts(t, res, 2, 0, 0)
	if res.Failed {
		t.Fatalf("%+v", res)
	}
	gvr := schema.GroupVersionResource{Group: "sync.example.com", Version: "v1", Resource: "widgets"}
	if _, err := dynamicClient(t).Resource(gvr).Namespace(ns).Get(context.Background(), "w1", metav1.GetOptions{}); err != nil {
		t.Fatalf("widget: %v", err)
	}
	res = mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
	wantCounts(t, res, 0, 0, 2)
}

func TestDryRunAndFilters(t *testing.T) {
	ns, err := cp.CreateNamespace(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	files := []File{{Path: "/m.yaml", Data: []byte(configMap("cm", nil, "") + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n")}}
	for _, strategy := range []string{"client", "server"} {
		p := testProject("group/dry", ns)
		p.DryRunStrategy = strategy
		res := mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
		if res.Applied != 2 || res.Failed || getCM(t, ns, "cm") != nil {
			t.Errorf("dry run %s: %+v; ConfigMap created: %v", strategy, res, getCM(t, ns, "cm") != nil)
		}
	}
	p := testProject("group/filtered", ns)
	p.ResourceExclusions = []Filter{{APIGroups: []string{""}, Kinds: []string{"Secret"}}}
	res := mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
	if res.Applied != 1 || res.Skipped != 1 {
		t.Errorf("exclusions: %+v, want 1 applied, 1 skipped", res)
	}
	if _, err := cp.Clientset().CoreV1().Secrets(ns).Get(context.Background(), "s", metav1.GetOptions{}); err == nil {
		t.Error("excluded Secret was applied")
	}
	p.ResourceExclusions = nil
	p.ResourceInclusions = []Filter{{APIGroups: []string{""}, Kinds: []string{"Secret"}}}
	res = mustSync(t, a, p, "c2", mustParse(t, a, ns, files...))
	// The ConfigMap is left out now, and not pruned: the project no longer
	// manages ConfigMaps.
	if res.Applied != 1 || res.Skipped != 1 || res.Pruned != 0 || getCM(t, ns, "cm") == nil {
		t.Errorf("inclusions: %+v", res)
	}
	if _, err := a.Sync(context.Background(), Project{ID: "x", InventoryPolicy: "take_everything"}, "c", nil); !errors.Is(err, ErrInvalidProject) ||
		!strings.Contains(err.Error(), "inventory_policy") {
		t.Errorf("invalid project: %v", err)
	}
}

func TestTimeouts(t *testing.T) {
	ctx := context.Background()
	ns, err := cp.CreateNamespace(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")

	// Wave 1 waits for the Deployment of wave 0 to be healthy, which never
	// happens without a controller-manager.
	p := testProject("group/waits", ns)
	p.ReconcileTimeout = 3 * time.Second
	files := []File{{Path: "/m.yaml", Data: []byte(deployment + "---\n" + configMap("after", nil, "  annotations:\n    argocd.argoproj.io/sync-wave: \"1\"\n"))}}
	res := mustSync(t, a, p, "c1", mustParse(t, a, ns, files...))
	if !res.Failed || !strings.Contains(res.Reason, "reconcile_timeout (3s) reached") || !strings.Contains(res.Reason, "Deployment/web") {
		t.Errorf("result %+v, want failed: reconcile_timeout reached, naming Deployment web", res)
	}
	if getCM(t, ns, "after") != nil {
		t.Error("wave 1 applied before wave 0 was healthy")
	}

	// Foreground deletion waits for the garbage collector, which is not
	// running: the sync does not wait for it, and reports it; once
	// prune_timeout has passed, the sync fails.
	q := testProject("group/fg", ns)
	q.PrunePropagationPolicy = "foreground"
	q.PruneTimeout = 2 * time.Second
	q.AllowEmpty = true
	mustSync(t, a, q, "c1", mustParse(t, a, ns, File{Path: "/m.yaml", Data: []byte(configMap("doomed", nil, ""))}))
	start := time.Now()
	res = mustSync(t, a, q, "c2", nil)
	if res.Pruned != 1 || res.Failed || len(res.PendingPrunes) != 1 || res.PendingPrunes[0].Object != "ConfigMap "+ns+"/doomed" ||
		!slices.Equal(res.PendingPrunes[0].Finalizers, []string{"foregroundDeletion"}) {
		t.Errorf("result %+v, want 1 pruned, not failed, doomed pending on foregroundDeletion", res)
	}
	if d := time.Since(start); d > q.PruneTimeout {
		t.Errorf("the sync waited %s for the pending prune", d)
	}
	// A moment before prune_timeout the sync still passes; just after it
	// fails. The timeout is read on a fake clock; the cluster's clock
	// set the deletionTimestamp.
	since := res.PendingPrunes[0].Since
	a.clock = clocktesting.NewFakePassiveClock(since.Add(q.PruneTimeout - time.Millisecond))
	defer func() { a.clock = clock.RealClock{} }()
	if res = mustSync(t, a, q, "c2", nil); res.Failed || len(res.PendingPrunes) != 1 {
		t.Errorf("result %+v before prune_timeout, want not failed, doomed pending", res)
	}
	a.clock = clocktesting.NewFakePassiveClock(since.Add(q.PruneTimeout + time.Millisecond))
	res = mustSync(t, a, q, "c2", nil)
	if !res.Failed || res.Failure != FailureObjects || !strings.Contains(res.Reason, "prune_timeout (2s) reached: ConfigMap "+ns+"/doomed is being deleted since ") ||
		!strings.Contains(res.Reason, "waiting for finalizer foregroundDeletion") {
		t.Errorf("result %+v, want failed (objects) with a prune_timeout reason", res)
	}
	if cm := getCM(t, ns, "doomed"); cm == nil || cm.GetDeletionTimestamp() == nil {
		t.Errorf("doomed should be pending foreground deletion: %v", cm)
	}
}

func TestConcurrentProjects(t *testing.T) {
	ns, err := cp.CreateNamespace(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, "agent1")
	const n = 4
	errs := make(chan error, 2*n)
	for i := range n {
		go func() {
			p := testProject(fmt.Sprintf("group/p%d", i), ns)
			var sb strings.Builder
			for j := range 20 {
				fmt.Fprintf(&sb, "---\n%s", configMap(fmt.Sprintf("p%d-%d", i, j), map[string]string{"v": "1"}, ""))
			}
			objs, err := a.Parse([]File{{Path: "/m.yaml", Data: []byte(sb.String())}}, ns)
			if err == nil {
				// Two syncs of one project at once run one after the other.
				done := make(chan Result, 2)
				for range 2 {
					go func() {
						res, err := a.Sync(context.Background(), p, "c1", objs)
						if err != nil {
							errs <- err
						}
						done <- res
					}()
				}
				r1, r2 := <-done, <-done
				if r1.Applied+r2.Applied != 20 || r1.Unchanged+r2.Unchanged != 20 {
					err = fmt.Errorf("project %d: results %+v and %+v, want 20 applied once", i, r1, r2)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
