package bench

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// smallObject is what `kubectl get namespace default` asks: the API
// server reads it from etcd (a consistent read) and answers with under
// 1 KB, so per-request costs, not bytes, make the difference.
const smallObject = "/api/v1/namespaces/default"

// BenchmarkGetLatency sends sequential GETs of a small object over one
// reused connection, straight to kube-apiserver and through kas. The goal
// is under 0.5 ms added at p50. "paired" alternates the two request by
// request, so drift in the machine's load hits both alike; its
// added-p50-us is the headline number. It swaps the order every
// iteration: work a request leaves behind (a log line, a window update)
// would otherwise always land on the same path.
func BenchmarkGetLatency(b *testing.B) {
	e := sharedProxyEnv(b)
	for _, t := range e.targets() {
		b.Run(t.name, func(b *testing.B) {
			warmUp(b, e, t)
			var lat latencies
			calls, cpu := ioSyscalls(), cpuTime()
			for b.Loop() {
				start := time.Now()
				e.mustGet(b, t, smallObject, nil)
				lat.add(time.Since(start))
			}
			reportSyscalls(b, calls)
			reportCPU(b, cpu)
			lat.reportMicros(b)
		})
	}
	b.Run("paired", func(b *testing.B) {
		ts := e.targets()
		for _, t := range ts {
			warmUp(b, e, t)
		}
		lats := make([]latencies, len(ts))
		for n := 0; b.Loop(); n++ {
			for k := range ts {
				i := k
				if n%2 == 1 {
					i = len(ts) - 1 - k
				}
				start := time.Now()
				e.mustGet(b, ts[i], smallObject, nil)
				lats[i].add(time.Since(start))
			}
		}
		direct, viaKas := lats[0].percentile(50), lats[1].percentile(50)
		b.ReportMetric(float64(direct)/1e3, "direct-p50-us")
		b.ReportMetric(float64(viaKas)/1e3, "via-kas-p50-us")
		b.ReportMetric(float64(viaKas-direct)/1e3, "added-p50-us")
		b.ReportMetric(float64(lats[1].percentile(99)-lats[0].percentile(99))/1e3, "added-p99-us")
	})
}

// warmUp opens the connections (and tunnel streams) a loop will reuse,
// so no timed request pays for a TCP or TLS handshake.
func warmUp(b *testing.B, e *proxyEnv, t target) {
	for range 50 {
		e.mustGet(b, t, smallObject, nil)
	}
}

// concurrency is the number of clients in BenchmarkConcurrent100.
const concurrency = 100

// BenchmarkConcurrent100 has 100 clients send the same GET as fast as
// they can, each on its own connection to kas (HTTP/1.1) or multiplexed
// on one connection straight to kube-apiserver (HTTP/2, as client-go).
func BenchmarkConcurrent100(b *testing.B) {
	e := sharedProxyEnv(b)
	for _, t := range e.targets() {
		b.Run(t.name, func(b *testing.B) {
			// A few concurrent rounds first: every client's connection (and
			// kas's pooled stream behind it) exists before the clock runs.
			if err := runClients(3*concurrency, func() error {
				_, err := e.getOK(t, smallObject, nil)
				return err
			}, nil); err != nil {
				b.Fatal(err)
			}
			var lat latencies
			b.ResetTimer()
			start, cpu := time.Now(), cpuTime()
			err := runClients(b.N, func() error {
				_, err := e.getOK(t, smallObject, nil)
				return err
			}, &lat)
			elapsed := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			reportCPU(b, cpu)
			lat.reportMicros(b)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
		})
	}
}

// runClients has `concurrency` goroutines share n calls of do, timing
// each into lat when it is not nil. It returns the first error.
func runClients(n int, do func() error, lat *latencies) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			var mine []time.Duration
			for next.Add(1) <= int64(n) {
				start := time.Now()
				if err := do(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				mine = append(mine, time.Since(start))
			}
			if lat != nil {
				lat.add(mine...)
			}
		})
	}
	wg.Wait()
	return firstErr
}
