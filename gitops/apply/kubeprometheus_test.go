package apply

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubePrometheus is a real-world manifest set: 95 files, CRDs up to 800 KB,
// a 1 MB ConfigMap list. shared/ sits beside the repository, as in CI.
const kubePrometheus = "../../../shared/testdata/kube-prometheus/manifests"

func readManifests(t testing.TB, dir string) []File {
	t.Helper()
	var files []File
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(dir), path)
		files = append(files, File{Path: "/" + filepath.ToSlash(rel), Data: data})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestKubePrometheus(t *testing.T) {
	if _, err := os.Stat(kubePrometheus); err != nil {
		t.Fatalf("kube-prometheus manifests: %v", err)
	}
	ctx := context.Background()
	files := readManifests(t, kubePrometheus)
	size := 0
	for _, f := range files {
		size += len(f.Data)
	}
	a := newApplier(t, "kp")
	t.Cleanup(func() {
		// Its APIService points to a service that never runs: leave discovery
		// of the shared API server clean for the other tests.
		err := cp.Clientset().Discovery().RESTClient().Delete().AbsPath("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io").Do(ctx).Error()
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete APIService: %v", err)
		}
	})
	start := time.Now()
	objs, err := a.Parse(files, "default")
	if err != nil {
		t.Fatal(err)
	}
	parsed := time.Since(start)
	p := testProject("kube-prometheus", "default")

	start = time.Now()
	res := mustSync(t, a, p, "c1", objs)
	first := time.Since(start)
	if res.Failed || res.Applied != len(objs) {
		t.Fatalf("first sync: %+v, want %d applied", res, len(objs))
	}

	// Every object is there.
	missing := 0
	for _, o := range objs {
		m, err := a.clients.mapping(o.GroupVersionKind())
		if err != nil {
			t.Fatal(err)
		}
		ri := dynamicClient(t).Resource(m.Resource)
		var getErr error
		if o.GetNamespace() != "" {
			_, getErr = ri.Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
		} else {
			_, getErr = ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		}
		if getErr != nil {
			missing++
			t.Errorf("%s: %v", describe(o), getErr)
		}
	}

	start = time.Now()
	res = mustSync(t, a, p, "c1", objs)
	noop := time.Since(start)
	wantCounts(t, res, 0, 0, len(objs))

	// A small change applies one object.
	cm, err := cp.Clientset().CoreV1().ConfigMaps("monitoring").Get(ctx, "grafana-dashboards", metav1.GetOptions{})
	if err == nil {
		cm.Data["extra"] = "by hand"
		cm, err = cp.Clientset().CoreV1().ConfigMaps("monitoring").Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	waitForCache(t, a, "", "ConfigMap", "monitoring", "grafana-dashboards", cm.ResourceVersion)
	start = time.Now()
	res = mustSync(t, a, p, "c1", objs)
	drift := time.Since(start)
	// The added key is not in the manifest: server-side apply leaves it,
	// and it is no drift of what the manifests set.
	wantCounts(t, res, 0, 0, len(objs))

	counts := map[string]int{}
	for _, o := range objs {
		counts[o.GetKind()]++
	}
	t.Logf("kube-prometheus: %d files, %.1f MB, %d objects (%d CRDs); parse %s, first sync %s, no-op resync %s, resync after a hand edit %s; health %s",
		len(files), float64(size)/1e6, len(objs), counts["CustomResourceDefinition"],
		parsed.Round(time.Millisecond), first.Round(time.Millisecond), noop.Round(time.Millisecond), drift.Round(time.Millisecond), res.Health)
}

// BenchmarkApply1000 applies 1,000 ConfigMaps to a new namespace, then
// resyncs them unchanged.
func BenchmarkApply1000(b *testing.B) {
	a := newApplier(b, "bench")
	var firstTotal, noopTotal time.Duration
	var heapDelta int64
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	for i := 0; i < b.N; i++ {
		ns, err := cp.CreateNamespace(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		var sb strings.Builder
		for j := range 1000 {
			fmt.Fprintf(&sb, "---\n%s", configMap(fmt.Sprintf("cm-%04d", j), map[string]string{"index": fmt.Sprint(j), "payload": strings.Repeat("x", 200)}, ""))
		}
		objs := mustParse(b, a, ns, File{Path: "/bench.yaml", Data: []byte(sb.String())})
		p := testProject("bench", ns)

		before := heap()
		start := time.Now()
		res := mustSync(b, a, p, "c1", objs)
		firstTotal += time.Since(start)
		heapDelta += heap() - before
		if res.Applied != 1000 || res.Failed {
			b.Fatalf("first apply: %+v", res)
		}
		start = time.Now()
		res = mustSync(b, a, p, "c1", objs)
		noopTotal += time.Since(start)
		if res.Applied != 0 || res.Unchanged != 1000 {
			b.Fatalf("no-op resync: %+v", res)
		}
	}
	b.ReportMetric(float64(firstTotal.Milliseconds())/float64(b.N), "first-apply-ms")
	b.ReportMetric(float64(noopTotal.Milliseconds())/float64(b.N), "noop-resync-ms")
	// The agent's heap grows by this much per 1,000 managed objects (the
	// cluster cache's entries and cached manifests; the parsed objects are
	// still referenced by the benchmark, so this is an upper bound).
	b.ReportMetric(float64(heapDelta)/float64(b.N)/(1<<20), "heap-MB-per-1000")
	b.ReportMetric(0, "ns/op")
}
