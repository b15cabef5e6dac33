package apply

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// BenchmarkPreCheck measures what the pre-check adds to a commit that
// changes every object (so every object is dry-run, then applied): the
// cert-manager install (CRDs of 270-328 KB) and 1,000 ConfigMaps, each
// synced with and without pre_check; and a commit that changes 10 of
// 1,000 ConfigMaps (only changed objects are dry-run). Each iteration
// changes an annotation on the objects it changes.
func BenchmarkPreCheck(b *testing.B) {
	for _, set := range []struct {
		name  string
		ns    string
		files func(b *testing.B, ns string) []File
		skip  []Filter
		// change is how many objects each round changes (0: all).
		change int
	}{
		{"cert-manager", "cert-manager", func(b *testing.B, _ string) []File {
			return append(readManifests(b, filepath.Join(certManager, "manifests")), readManifests(b, filepath.Join(certManager, "custom"))...)
		}, []Filter{{APIGroups: []string{"admissionregistration.k8s.io"}, Kinds: []string{"*WebhookConfiguration"}}}, 0},
		{"configmaps-1000", "", func(b *testing.B, _ string) []File {
			var sb strings.Builder
			for j := range 1000 {
				fmt.Fprintf(&sb, "---\n%s", configMap(fmt.Sprintf("cm-%04d", j), map[string]string{"index": fmt.Sprint(j), "payload": strings.Repeat("x", 200)}, ""))
			}
			return []File{{Path: "/bench.yaml", Data: []byte(sb.String())}}
		}, nil, 0},
		{"configmaps-1000-10-changed", "", func(b *testing.B, _ string) []File {
			var sb strings.Builder
			for j := range 1000 {
				fmt.Fprintf(&sb, "---\n%s", configMap(fmt.Sprintf("cm-%04d", j), map[string]string{"index": fmt.Sprint(j), "payload": strings.Repeat("x", 200)}, ""))
			}
			return []File{{Path: "/bench.yaml", Data: []byte(sb.String())}}
		}, nil, 10},
	} {
		for _, check := range []bool{true, false} {
			name := set.name + "/precheck"
			if !check {
				name = set.name + "/no-precheck"
			}
			b.Run(name, func(b *testing.B) {
				ns := set.ns
				if ns == "" {
					var err error
					if ns, err = cp.CreateNamespace(context.Background(), "bench"); err != nil {
						b.Fatal(err)
					}
				}
				a := newApplier(b, "bench")
				p := testProject("bench/"+set.name, ns)
				p.ResourceExclusions = set.skip
				p.SkipPreCheck = !check
				objs := mustParse(b, a, ns, set.files(b, ns)...)
				res := mustSync(b, a, p, "setup", objs)
				if res.Failed {
					b.Fatalf("setup: %+v", res)
				}
				var total time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					changed := make([]*unstructured.Unstructured, len(objs))
					for j, o := range objs {
						if set.change > 0 && j >= set.change {
							changed[j] = o
							continue
						}
						c := o.DeepCopy()
						ann := c.GetAnnotations()
						if ann == nil {
							ann = map[string]string{}
						}
						ann["bench.kubetunnel.io/round"] = fmt.Sprintf("%s-%v-%d", b.Name(), check, i)
						c.SetAnnotations(ann)
						changed[j] = c
					}
					start := time.Now()
					res := mustSync(b, a, p, fmt.Sprint("c", i), changed)
					total += time.Since(start)
					want := len(objs) - res.Skipped
					if set.change > 0 {
						want = set.change
					}
					if res.Failed || res.Applied != want {
						b.Fatalf("round %d: %+v", i, res)
					}
				}
				b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "sync-ms")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
