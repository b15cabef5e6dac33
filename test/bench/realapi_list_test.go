package bench

import (
	"testing"
	"time"
)

// BenchmarkRealAPIList is BenchmarkRealAPIPaths's ~1 MB list alone, one
// path at a time (for profiles: -cpuprofile with -bench .../kas-protocol2).
func BenchmarkRealAPIList(b *testing.B) {
	e := sharedProxyEnv(b)
	ts, err := e.realAPITargets()
	if err != nil {
		b.Fatal(err)
	}
	ns, err := createSmallListObjects(e)
	if err != nil {
		b.Fatal(err)
	}
	listPath := "/api/v1/namespaces/" + ns + "/configmaps"
	for _, t := range ts {
		b.Run(t.name, func(b *testing.B) {
			var n int64
			for b.Loop() {
				n = e.mustGet(b, t, listPath, identity)
			}
			b.SetBytes(n)
		})
	}
}

// BenchmarkRealAPIGet is BenchmarkRealAPIPaths's small GET alone, one
// path at a time (for profiles).
func BenchmarkRealAPIGet(b *testing.B) {
	e := sharedProxyEnv(b)
	ts, err := e.realAPITargets()
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range ts {
		b.Run(t.name, func(b *testing.B) {
			warmUp(b, e, t)
			var lat latencies
			cpu := cpuTime()
			for b.Loop() {
				start := time.Now()
				e.mustGet(b, t, smallObject, nil)
				lat.add(time.Since(start))
			}
			reportCPU(b, cpu)
			lat.reportMicros(b)
		})
	}
}
