package bench

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// latencies collects one duration per request. Percentiles need every
// sample: averages (ns/op) hide the tail that users notice.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d ...time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

// percentile returns the p-th percentile (0 < p <= 100) by the
// nearest-rank method, or 0 without samples.
func (l *latencies) percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// reportMicros reports p50 and p99 in microseconds.
func (l *latencies) reportMicros(b *testing.B) {
	b.ReportMetric(float64(l.percentile(50))/1e3, "p50-us")
	b.ReportMetric(float64(l.percentile(99))/1e3, "p99-us")
}

// reportMillis reports p50 and p99 in milliseconds.
func (l *latencies) reportMillis(b *testing.B) {
	b.ReportMetric(float64(l.percentile(50))/1e6, "p50-ms")
	b.ReportMetric(float64(l.percentile(99))/1e6, "p99-ms")
}

// ioSyscalls returns the read and write system calls this process has
// made so far (Linux /proc/self/io syscr + syscw), or -1 where that file
// does not exist. Client, kas and agentk all run in this process, so the
// count per request shows what each hop costs in kernel crossings.
func ioSyscalls() int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	var total int64
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "syscr" || k == "syscw" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			total += n
		}
	}
	return total
}

// reportSyscalls reports the system calls per iteration since before,
// a value of ioSyscalls.
func reportSyscalls(b *testing.B, before int64) {
	if after := ioSyscalls(); before >= 0 && after >= 0 && b.N > 0 {
		b.ReportMetric(float64(after-before)/float64(b.N), "syscalls/op")
	}
}

// cpuTime returns the CPU time (user + system) this process has used so
// far. Client, kas and agentk run in this process and the API server does
// not, so via kas minus direct is what kas and agentk cost per request.
// Unlike latency, it barely moves when other processes share the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per iteration since before, a value of
// cpuTime.
func reportCPU(b *testing.B, before time.Duration) {
	if after := cpuTime(); before >= 0 && after >= 0 && b.N > 0 {
		b.ReportMetric(float64(after-before)/1e3/float64(b.N), "cpu-us/op")
	}
}

// count is the number of samples.
func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}
