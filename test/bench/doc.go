// Package bench holds the performance benchmarks of the tunnel and the
// Kubernetes API proxy: reconnect time after a kas restart, and latency
// and throughput of requests through kas compared with the same requests
// sent straight to a real kube-apiserver. Results and how to run them are
// in docs/benchmarks.md.
package bench
