// Package load is the bounded load test: many agents (the real
// agentk code, many instances in this process) connected to the real kas
// binary, and many concurrent proxied requests for a fixed time. It fails
// on any failed request and reports latency percentiles and what each
// connected agent costs kas (heap, RSS, goroutines, from kas's /metrics).
// Results and how to run it are in docs/benchmarks.md ("Load test").
package load
