package apply

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache"
	"go.uber.org/goleak"

	"kubetunnel/internal/testutil/controlplane"
)

var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	flag.Parse()
	if fuzzing() {
		// The fuzz targets test pure functions: no control plane for the
		// coordinator and every worker process.
		os.Exit(m.Run())
	}
	os.Exit(controlplane.Main(m, &cp, controlplane.Options{},
		// gitops-engine retries APIService watches with a backoff it does
		// not cancel when the cache is invalidated: the goroutine sleeps
		// for up to tens of seconds after the cache is gone, then ends.
		goleak.IgnoreAnyFunction("github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache.(*clusterCache).reconcileAPIServiceWatches")))
}

// fuzzing reports whether this process runs fuzz targets (go test -fuzz).
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// tlogWriter sends log lines to t.Logf until the test is over (the
// cluster cache's goroutines may log a little longer).
type tlogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tlogWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// newApplier starts an Applier for the test control plane with agentk's
// default client rate limits, and stops it when the test ends.
func newApplier(t testing.TB, agent string) *Applier {
	t.Helper()
	w := &tlogWriter{t: t}
	level := slog.LevelInfo
	if os.Getenv("APPLY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	cfg := cp.RESTConfig()
	// agentk's defaults, not the test client's; APPLY_TEST_QPS=-1 measures
	// without a client-side limit.
	cfg.QPS, cfg.Burst = 0, 0
	if q := os.Getenv("APPLY_TEST_QPS"); q != "" {
		v, err := strconv.ParseFloat(q, 32)
		if err != nil {
			t.Fatal(err)
		}
		cfg.QPS, cfg.Burst = float32(v), max(int(v)*2, 1)
	}
	a, err := New(cfg, agent, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		w.close()
	})
	return a
}

// testProject has settings that work without a controller-manager:
// background deletion (foreground needs the garbage collector).
func testProject(id, namespace string) Project {
	return Project{
		ID:                     id,
		DefaultNamespace:       namespace,
		Prune:                  true,
		PrunePropagationPolicy: "background",
		ReconcileTimeout:       2 * time.Minute,
		PruneTimeout:           time.Minute,
	}
}

func configMap(name string, data map[string]string, extraMeta string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n%sdata:\n", name, extraMeta)
	for k, v := range data {
		fmt.Fprintf(&b, "  %s: %q\n", k, v)
	}
	return b.String()
}

func mustParse(t testing.TB, a *Applier, ns string, files ...File) []*unstructured.Unstructured {
	t.Helper()
	objs, err := a.Parse(files, ns)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return objs
}

func mustSync(t testing.TB, a *Applier, p Project, commit string, objs []*unstructured.Unstructured) Result {
	t.Helper()
	start := time.Now()
	res, err := a.Sync(context.Background(), p, commit, objs)
	if err != nil {
		t.Fatalf("Sync %s: %v", commit, err)
	}
	t.Logf("Sync %s: %+v in %s", commit, res, time.Since(start).Round(time.Millisecond))
	return res
}

func wantCounts(t testing.TB, res Result, applied, pruned, unchanged int) {
	t.Helper()
	if res.Applied != applied || res.Pruned != pruned || res.Unchanged != unchanged {
		t.Errorf("applied/pruned/unchanged = %d/%d/%d, want %d/%d/%d (reason %q)",
			res.Applied, res.Pruned, res.Unchanged, applied, pruned, unchanged, res.Reason)
	}
}

// dynamicClient is the test's own client (not the Applier's).
func dynamicClient(t testing.TB) dynamic.Interface {
	t.Helper()
	dynOnce.Do(func() { dyn, dynErr = dynamic.NewForConfig(cp.RESTConfig()) })
	if dynErr != nil {
		t.Fatal(dynErr)
	}
	return dyn
}

var (
	dynOnce sync.Once
	dyn     dynamic.Interface
	dynErr  error
)

var cmGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func getCM(t testing.TB, ns, name string) *unstructured.Unstructured {
	t.Helper()
	obj, err := dynamicClient(t).Resource(cmGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// waitForCache waits until a's cluster cache shows the object at
// resourceVersion rv or later (or gone, for rv ""), as a running agent
// would see it a moment later.
func waitForCache(t testing.TB, a *Applier, group, kind, ns, name, rv string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		found := a.cache.FindResources(ns, func(r *cache.Resource) bool {
			return r.Ref.Name == name && r.Ref.Kind == kind && r.Ref.GroupVersionKind().Group == group
		})
		if rv == "" && len(found) == 0 {
			return
		}
		for _, r := range found {
			if rv != "" && !olderVersion(r.ResourceVersion, rv) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("cache never showed %s %s/%s at resourceVersion %q", kind, ns, name, rv)
}
