package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks in this file measure every path together, in one run,
// alternating between them (in time slices, or transfer by transfer), so
// that drift in the machine's load hits all paths alike. The parent
// benchmark measures; each sub-benchmark (scenario/path) only reports its
// path's share, so -bench can't run one path alone (a filter only hides
// the others' lines). docs/benchmarks.md is generated from this output by
// test/bench/report (make bench).

// reportSub reports metrics as a sub-benchmark named name, without an
// ns/op of its own (the work was done and timed by the parent).
func reportSub(b *testing.B, name string, metrics map[string]float64) {
	b.Run(name, func(b *testing.B) {
		b.ReportMetric(0, "ns/op")
		for unit, v := range metrics {
			b.ReportMetric(v, unit)
		}
	})
}

// rotated returns ps starting at index k mod len(ps), so that no path is
// always the first after a pause.
func rotated[T any](ps []T, k int) []T {
	k %= len(ps)
	return append(slices.Clone(ps[k:]), ps[:k]...)
}

// withPaths starts the named paths for one benchmark and stops them at
// its end.
func withPaths(b *testing.B, names []string, withLink bool) (*backend, []*path) {
	b.Helper()
	be, err := startBackend()
	if err != nil {
		b.Fatal(err)
	}
	ps, err := startPaths(be, names, withLink)
	if err != nil {
		be.stop()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := stopPaths(ps); err != nil {
			b.Errorf("stopping paths: %v", err)
		}
		if err := be.stop(); err != nil {
			b.Errorf("stopping backend: %v", err)
		}
	})
	return be, ps
}

// openLoop sends small GETs through p at rate per second for d, each on
// its own goroutine at its scheduled time, whether or not earlier ones
// have finished (an open loop, as independent kubectl users are), so a
// slow path builds a queue instead of slowing the sender down. Each
// latency counts from when its goroutine sends the request: on a busy
// 2-core machine the sender's own wake-ups are late by up to a
// millisecond, which is not the path's doing. It returns how many
// requests failed and the first failure's error.
func openLoop(p *path, rate int, d time.Duration, lat *latencies) (failed int64, first error) {
	var nFailed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= d {
			break
		}
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			sent := time.Now()
			if err := p.fetch(ctx, smallSize); err != nil {
				nFailed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				lat.add(requestTimeout)
				return
			}
			lat.add(time.Since(sent))
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		first = *e
	}
	return nFailed.Load(), first
}

// requestTimeout bounds one small GET; a failed or timed-out request
// counts as taking this long.
const requestTimeout = 10 * time.Second

// Arrival rates of BenchmarkLadderGet (requests per second, one path at
// a time). The latency goals (docs/benchmarks.md) are read at goalRate.
var getRates = []int{200, 500, 1000, 2000, 3000}

// getSamples is how many requests each path gets at each rate at least,
// over getMinTime at least, and getSlice how long each turn in the
// rotation is. All paths share one process, so a garbage collection
// (every 0.1–0.3 s at 3,000 req/s, each pausing 2–4 ms and marking for
// 5–26 ms on 2 cores) stalls whichever path has its turn: with 1 s per
// path, one such stall decided a path's p99 at the top rates. Six turns
// per path spread them over every path alike.
const (
	getSamples = 1500
	getMinTime = 3 * time.Second
	getSlice   = 500 * time.Millisecond
)

// BenchmarkLadderGet measures small GET latency (p50, p99 in µs) on every
// path at fixed arrival rates (open loop), the paths taking turns in
// half-second slices.
func BenchmarkLadderGet(b *testing.B) {
	_, ps := withPaths(b, ladderPaths, false)
	for _, rate := range getRates {
		perPath := max(time.Duration(getSamples)*time.Second/time.Duration(rate), getMinTime)
		rounds := int((perPath + getSlice - 1) / getSlice)
		lats := make(map[string]*latencies)
		failed := make(map[string]int64)
		firstErr := make(map[string]error)
		for _, p := range ps {
			lats[p.name] = &latencies{}
		}
		for r := range rounds {
			for _, p := range rotated(ps, r) {
				n, err := openLoop(p, rate, getSlice, lats[p.name])
				failed[p.name] += n
				if firstErr[p.name] == nil {
					firstErr[p.name] = err
				}
			}
		}
		for _, p := range ps {
			if err := firstErr[p.name]; err != nil {
				b.Logf("rate=%d/%s: %d failed, the first: %v", rate, p.name, failed[p.name], err)
			}
			l := lats[p.name]
			reportSub(b, fmt.Sprintf("rate=%d/%s", rate, p.name), map[string]float64{
				"p50-us":   micros(l.percentile(50)),
				"p99-us":   micros(l.percentile(99)),
				"requests": float64(l.count()),
				"failed":   float64(failed[p.name]),
			})
		}
	}
}

func micros(d time.Duration) float64 { return float64(d) / 1e3 }

// Added round-trip times of BenchmarkLadderThroughput, and how much each
// transfer may carry: 1 GiB, but no transfer runs longer than
// transferCap (the report says when one was cut short), so a slow path at
// 50 ms cannot take minutes.
var (
	throughputRTTs = []time.Duration{0, 10 * time.Millisecond, 50 * time.Millisecond}
)

const (
	transferSize = 1 << 30
	transferCap  = 12 * time.Second
)

// transfer reads up to size bytes through p in one response, stopping
// after limit; it returns the bytes read and the time from the request.
func transfer(p *path, size int64, limit time.Duration) (int64, time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	body, err := p.get(ctx, size)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", p.name, err)
	}
	defer body.Close()
	buf := make([]byte, 256<<10)
	var n int64
	deadline := start.Add(limit)
	for n < size {
		k, err := body.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, time.Since(start), fmt.Errorf("%s: after %d bytes: %w", p.name, n, err)
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if n < size && time.Now().Before(deadline) {
		return n, time.Since(start), fmt.Errorf("%s: %d bytes, want %d", p.name, n, size)
	}
	return n, time.Since(start), nil
}

// BenchmarkLadderThroughput measures one stream's throughput (MB/s) of a
// 1 GiB response on every path with 0, 10 and 50 ms of round-trip time
// added on the path's long hop (a link: kas↔agentk for the tunnels,
// client↔backend for direct). The paths take turns, transfer by transfer.
func BenchmarkLadderThroughput(b *testing.B) {
	_, ps := withPaths(b, ladderPaths, true)
	for i, rtt := range throughputRTTs {
		for _, p := range ps {
			p.setRTT(rtt)
		}
		res := map[string]map[string]float64{}
		for _, p := range rotated(ps, i) {
			n, d, err := transfer(p, transferSize, transferCap)
			if err != nil {
				b.Fatal(err)
			}
			res[p.name] = map[string]float64{
				"MB/s":   float64(n) / d.Seconds() / 1e6,
				"MB":     float64(n) / 1e6,
				"cut":    boolMetric(n < transferSize),
				"rtt-ms": float64(rtt) / 1e6,
			}
		}
		for _, p := range ps {
			reportSub(b, fmt.Sprintf("rtt=%dms/%s", rtt/time.Millisecond, p.name), res[p.name])
		}
	}
}

func boolMetric(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// Stream counts of BenchmarkStreams and the bytes all streams of one run
// carry together.
var streamCounts = []int{1, 10, 100, 1000}

const streamsTotal = 256 << 20

// BenchmarkStreams has 1, 10, 100 and 1,000 streams fetch at once
// (256 MiB in all, split evenly) on each HTTP path. It reports the
// aggregate MB/s and fairness: the slowest and the median stream's own
// MB/s (bytes over the time from the common start to its last byte).
func BenchmarkStreams(b *testing.B) {
	_, ps := withPaths(b, httpPaths, false)
	for i, n := range streamCounts {
		each := int64(streamsTotal / n)
		res := map[string]map[string]float64{}
		for _, p := range rotated(ps, i) {
			rates := make([]float64, n)
			errs := make([]error, n)
			var ready, wg sync.WaitGroup
			ready.Add(1)
			start := time.Now()
			for k := range n {
				wg.Go(func() {
					ready.Wait()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					defer cancel()
					errs[k] = p.fetch(ctx, each)
					rates[k] = float64(each) / time.Since(start).Seconds() / 1e6
				})
			}
			start = time.Now()
			ready.Done()
			wg.Wait()
			elapsed := time.Since(start)
			for _, err := range errs {
				if err != nil {
					b.Fatalf("%d streams: %v", n, err)
				}
			}
			sort.Float64s(rates)
			res[p.name] = map[string]float64{
				"MB/s":               float64(each) * float64(n) / elapsed.Seconds() / 1e6,
				"stream-min-MB/s":    rates[0],
				"stream-median-MB/s": rates[n/2],
			}
			// Streams over kas's idle pool are closed now, not 90 s later.
			time.Sleep(100 * time.Millisecond)
		}
		for _, p := range ps {
			reportSub(b, fmt.Sprintf("streams=%d/%s", n, p.name), res[p.name])
		}
	}
}

// Head-of-line settings: small GETs at holRate per second in slices of
// holSlice, alternating without and with a stalled stream, holRounds
// times each.
const (
	holRate   = 200
	holSlice  = 2 * time.Second
	holRounds = 3
	holFill   = 500 * time.Millisecond
)

// holPaths are the paths that multiplex streams on one connection, and
// direct for reference.
var holPaths = []string{pathDirect, pathKasWS, pathKasTCP, pathRemotedialer}

// BenchmarkHeadOfLine checks that one stream whose reader stalls does
// not slow the others: small GETs at a fixed rate, with and without a
// 1 GiB response on the same path that nobody reads (its sender blocks
// once every window and buffer on the way is full). Reports the other
// requests' p50/p99 in both conditions.
func BenchmarkHeadOfLine(b *testing.B) {
	_, ps := withPaths(b, holPaths, false)
	// The paths take turns round by round, so drift in the machine's
	// speed falls on all of them alike.
	free := make(map[string]*latencies)
	stalled := make(map[string]*latencies)
	freeFailed := make(map[string]int64)
	stalledFailed := make(map[string]int64)
	for _, p := range ps {
		free[p.name], stalled[p.name] = &latencies{}, &latencies{}
	}
	for round := range holRounds {
		for _, p := range rotated(ps, round) {
			var slice latencies
			n, err := openLoop(p, holRate, holSlice, &slice)
			freeFailed[p.name] += n
			b.Logf("%s round %d without stall: p50 %v p99 %v, %d failed (the first: %v)", p.name, round, slice.percentile(50), slice.percentile(99), n, err)
			free[p.name].add(slice.d...)

			ctx, cancel := context.WithCancel(context.Background())
			body, err := p.get(ctx, transferSize)
			if err != nil {
				cancel()
				b.Fatalf("%s: stalled stream: %v", p.name, err)
			}
			time.Sleep(holFill) // let it fill every window on the way
			slice = latencies{}
			n, err = openLoop(p, holRate, holSlice, &slice)
			stalledFailed[p.name] += n
			b.Logf("%s round %d with stall: p50 %v p99 %v, %d failed (the first: %v)", p.name, round, slice.percentile(50), slice.percentile(99), n, err)
			stalled[p.name].add(slice.d...)
			cancel()
			body.Close()
		}
	}
	for _, p := range ps {
		f, st := free[p.name], stalled[p.name]
		reportSub(b, p.name+"/stall=no", map[string]float64{
			"p50-us": micros(f.percentile(50)), "p99-us": micros(f.percentile(99)), "failed": float64(freeFailed[p.name]),
		})
		reportSub(b, p.name+"/stall=yes", map[string]float64{
			"p50-us": micros(st.percentile(50)), "p99-us": micros(st.percentile(99)), "failed": float64(stalledFailed[p.name]),
		})
	}
}
