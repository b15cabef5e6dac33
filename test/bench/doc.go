// Package bench holds the performance benchmarks of the tunnel and the
// Kubernetes API proxy: reconnect time after a kas restart, and latency
// and throughput of requests through kas compared with the same requests
// sent straight to a real kube-apiserver.
//
// The comparison suite (`make bench`) compares, in one run on loopback, a
// ladder of paths from a raw TCP copy up to the full kas → tunnel →
// agentk path, and the peer rancher/remotedialer, all in front of the same
// backend (paths_test.go, peer_test.go); ladder_test.go and agents_test.go
// hold the scenarios, and test/bench/report renders docs/benchmarks.md
// from their output. Results and how to run them are in
// docs/benchmarks.md.
package bench
