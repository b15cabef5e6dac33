package bench

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// cpuPerMBPaths are the paths BenchmarkThroughputCPU compares: the
// process's CPU per byte is what limits one stream on a 2-core machine.
var cpuPerMBPaths = []string{pathDirect, pathRemotedialer, pathKasWS, pathKasTCP}

// BenchmarkThroughputCPU measures, for one 1 GiB stream per path at
// 10 ms added RTT (as BenchmarkLadderThroughput's middle column), the
// benchmark process's CPU time (getrusage: client, kas, agentk or the
// remotedialer ends, backend and link relay together) per MB carried,
// three rounds with the paths taking turns; each path reports the median
// transfer. Unlike throughput, CPU per MB changes little when other work
// takes the machine's cores, so it compares code on a busy machine.
func BenchmarkThroughputCPU(b *testing.B) {
	_, ps := withPaths(b, cpuPerMBPaths, true)
	for _, p := range ps {
		p.setRTT(10 * time.Millisecond)
	}
	cpu := map[string][]float64{}
	mbps := map[string][]float64{}
	for round := range 3 {
		for _, p := range rotated(ps, round) {
			before := cpuTime()
			n, d, err := transfer(p, transferSize, transferCap)
			used := cpuTime() - before
			if err != nil {
				b.Fatal(err)
			}
			mb := float64(n) / 1e6
			cpu[p.name] = append(cpu[p.name], float64(used.Microseconds())/mb)
			mbps[p.name] = append(mbps[p.name], mb/d.Seconds())
		}
	}
	for _, p := range ps {
		reportSub(b, fmt.Sprintf("rtt=10ms/%s", p.name), map[string]float64{
			"cpu-us/MB": median(cpu[p.name]),
			"MB/s":      median(mbps[p.name]),
		})
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
