package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `cpu: AMD EPYC
BenchmarkLadderGet/rate=200/direct-2         	       1	         0 failed	       400.0 p50-us	      1000 p99-us	      1500 requests
BenchmarkLadderGet/rate=200/kas-ws-2         	       1	         0 failed	       650.0 p50-us	      3000 p99-us	      1500 requests
BenchmarkLadderGet/rate=200/kas-tcp-2        	       1	         0 failed	       600.0 p50-us	      1800 p99-us	      1500 requests
BenchmarkLadderGet/rate=200/remotedialer-2   	       1	         2 failed	       700.0 p50-us	      2500 p99-us	      1500 requests
BenchmarkLadderGet/rate=500/direct-2         	       1	         0 failed	       400.0 p50-us	      1000 p99-us	      1500 requests
BenchmarkLadderGet/rate=500/kas-ws-2         	       1	         0 failed	       650.0 p50-us	     12000 p99-us	      1500 requests
BenchmarkLadderGet/rate=500/kas-tcp-2        	       1	         0 failed	       600.0 p50-us	      9000 p99-us	      1500 requests
BenchmarkLadderGet/rate=500/remotedialer-2   	       1	         0 failed	       700.0 p50-us	      9900 p99-us	      1500 requests
BenchmarkLadderGet/rate=1000/kas-tcp-2       	       1	         0 failed	       600.0 p50-us	      8000 p99-us	      1500 requests
BenchmarkLadderGet/rate=1000/remotedialer-2  	       1	         0 failed	       700.0 p50-us	     15000 p99-us	      1500 requests
BenchmarkLadderThroughput/rtt=10ms/direct-2  	       1	 300.0 MB/s	      1074 MB	         0 cut	        10.00 rtt-ms
BenchmarkLadderThroughput/rtt=10ms/kas-ws-2  	       1	 160.0 MB/s	      1074 MB	         0 cut	        10.00 rtt-ms
BenchmarkLadderThroughput/rtt=10ms/remotedialer-2 	       1	  50.0 MB/s	       600 MB	         1.000 cut	        10.00 rtt-ms
BenchmarkHeadOfLine/kas-ws/stall=no-2        	       1	         0 failed	       900 p50-us	      2000 p99-us
BenchmarkHeadOfLine/kas-ws/stall=yes-2       	       1	         0 failed	       950 p50-us	      2300 p99-us
BenchmarkIdleAgents/agents=10000-2           	       1	     76336 B/agent	       523.3 connect-ms	     10000 connected	        10.00 goroutines/agent	     45928 stack-B/agent
BenchmarkReconnectStorm/agents=1000-2        	       1	     12000 all-back-ms	      1000 connected	       609.4 first-ms	       109.0 max-per-100ms	      9358 p50-ms	     11000 p99-ms	     3000 stop-ms
PASS
`

// TestReport renders a sample run into a document with markers and
// checks the verdicts a reader would look for.
func TestReport(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.txt")
	md := filepath.Join(dir, "benchmarks.md")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := "# Benchmarks\n\nhand-written\n\n" + beginMarker + "\nold\n" + endMarker + "\n\n## Later, by hand\n"
	if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, md, filepath.Join(dir, "img"), "busy machine"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	out := string(got)
	for _, want := range []string{
		"hand-written", "## Later, by hand", "> **Note:** busy machine",
		// p50 +250 µs: met; p99 +2 ms: not met by 1 ms.
		"| small GET p50 within 300 µs of direct (200 req/s) | kas-ws | +250 µs (650 µs vs 400 µs) | **met** (50 µs to spare) |",
		"| small GET p99 within 1 ms of direct | kas-ws | +2000 µs (3000 µs vs 1000 µs) | **not met** (over by 1000 µs) |",
		"| one stream at 10 ms RTT: ≥ 2× remotedialer | kas-ws | 160 vs 50 MB/s (3.20×) | **met** (1.20× above the 2× goal) |",
		"| one stream at 10 ms RTT: ≥ 70 % of direct | kas-ws | 160 vs 300 MB/s (53 %) | **not met** (short by 17 points) |",
		// p99 under 10 ms up to 200 (kas-ws), 1000 (kas-tcp), 500 (remotedialer).
		"| highest rate whose p99 stays under 10 ms ≥ remotedialer's | kas-ws | 200 req/s vs 500 req/s | **not met** (300 req/s lower) |",
		"| highest rate whose p99 stays under 10 ms ≥ remotedialer's | kas-tcp | 1000 req/s vs 500 req/s | **met** (500 req/s higher) |",
		"| 2000 µs → 2300 µs (+15 %) | **met** (5 points to spare) |",
		"| 10,000 agents held by one kas | kas-ws | 10000 connected | **met**",
		"| 1,000 agents back within 15 s of a kas restart | kas-ws | 12.00 s (1000 back) | **met** (3.00 s to spare) |",
		"50 MB/s (600 MB*)",
		"| small GET p99 lower than remotedialer | kas-ws | 3000 µs vs 2500 µs | **not met** (500 µs higher) |",
		"| idle kas heap < 64 KiB per agent (10000 agents, WebSocket) | kas-ws | 74.5 KiB | **not met** (over by 10.5 KiB) |",
		"bench-throughput.png",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "\nold\n") {
		t.Error("the old generated section is still there")
	}
	if _, err := os.Stat(filepath.Join(dir, "img", "bench-latency-p99.png")); err != nil {
		t.Errorf("latency plot: %v", err)
	}
}
