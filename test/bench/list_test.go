package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Five ConfigMaps of a million bytes each: about 5 MB per list, under the
// API server's 1 MiB limit per object.
const (
	listObjects    = 5
	listObjectSize = 1_000_000
)

var (
	listOnce sync.Once
	listNS   string
	listErr  error
)

// listNamespace creates the ConfigMaps once per run.
func listNamespace(b *testing.B, e *proxyEnv) string {
	b.Helper()
	listOnce.Do(func() { listNS, listErr = createListObjects(e) })
	if listErr != nil {
		b.Fatal(listErr)
	}
	return listNS
}

func createListObjects(e *proxyEnv) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := e.cp.CreateNamespace(ctx, "bench-list")
	if err != nil {
		return "", err
	}
	for i := range listObjects {
		// Random data: the benchmark asks for no compression, and random
		// bytes keep any layer from shrinking what it carries anyway.
		raw := make([]byte, listObjectSize*3/4)
		rand.Read(raw)
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("blob-%d", i)},
			Data:       map[string]string{"blob": base64.StdEncoding.EncodeToString(raw)},
		}
		if _, err := e.cp.Clientset().CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("create %s: %w", cm.Name, err)
		}
	}
	return ns, nil
}

// identity asks for the body uncompressed. Go's transports (the
// benchmark's, and client-go's in agentk) otherwise request gzip, and
// kube-apiserver compresses large lists: the benchmark would then measure
// gzip on two cores, not what the tunnel carries.
var identity = http.Header{"Accept-Encoding": {"identity"}}

// BenchmarkList5MB lists ~5 MB of ConfigMaps, straight from
// kube-apiserver and through kas. The goal is via-kas at least 70% of
// direct's MB/s.
func BenchmarkList5MB(b *testing.B) {
	e := sharedProxyEnv(b)
	path := "/api/v1/namespaces/" + listNamespace(b, e) + "/configmaps"
	for _, t := range e.targets() {
		b.Run(t.name, func(b *testing.B) {
			size := e.mustGet(b, t, path, identity)
			if size < listObjects*listObjectSize {
				b.Fatalf("%s: list of %d bytes, want at least %d", t.name, size, listObjects*listObjectSize)
			}
			b.SetBytes(size)
			var lat latencies
			calls, cpu := ioSyscalls(), cpuTime()
			for b.Loop() {
				start := time.Now()
				if n := e.mustGet(b, t, path, identity); n != size {
					b.Fatalf("%s: list of %d bytes, then %d", t.name, size, n)
				}
				lat.add(time.Since(start))
			}
			reportSyscalls(b, calls)
			reportCPU(b, cpu)
			lat.reportMillis(b)
		})
	}
	// paired alternates the two lists (order swapped every iteration), so
	// drift in the machine's load hits both alike; via-kas-% is via kas's
	// throughput as a share of direct's over the same interval.
	b.Run("paired", func(b *testing.B) {
		ts := e.targets()
		var size int64
		for _, t := range ts {
			size = e.mustGet(b, t, path, identity)
		}
		b.SetBytes(2 * size)
		spent := make([]time.Duration, len(ts))
		for n := 0; b.Loop(); n++ {
			for k := range ts {
				i := k
				if n%2 == 1 {
					i = len(ts) - 1 - k
				}
				start := time.Now()
				e.mustGet(b, ts[i], path, identity)
				spent[i] += time.Since(start)
			}
		}
		b.ReportMetric(100*spent[0].Seconds()/spent[1].Seconds(), "via-kas-%")
	})
}
