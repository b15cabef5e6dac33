// Package mux multiplexes streams over one connection in yamux's wire
// format (github.com/hashicorp/yamux's spec.md: 12-byte frame headers,
// SYN/ACK/FIN/RST flags, a 256 KiB initial window per stream), so an
// agentk or kas still built on hashicorp/yamux talks to it unchanged.
//
// It exists for one difference: a stream's frames are written by the
// goroutine that writes to the stream, under the session's write lock.
// hashicorp/yamux hands every frame to a send goroutine and waits for it,
// which costs two goroutine switches per write and, on a machine whose
// other cores are idle, a thread wake-up each; for a proxied GET that
// was 20–50 µs of CPU on each side of the tunnel (docs/benchmarks.md,
// "Own stream multiplexer").
//
// The receive loop reads frames and never writes to the connection
// (what it answers with, pings and resets, goes through a small queue to
// its own goroutine), so it always drains the connection: a writer can
// wait for the peer's process, never for this one's receive loop.
package mux
