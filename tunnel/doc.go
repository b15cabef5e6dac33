// Package tunnel is the connection between agentk and kas: agentk dials out
// (WebSocket or raw TCP, with or without TLS), proves who it is once in a
// handshake, and both ends then run one multiplexed session over the
// connection (package mux, in yamux's wire format).
//
// Streams opened by agentk carry gRPC to kas; streams opened by kas carry
// HTTP to agentk. PROTOCOL.md beside this file is the wire contract.
package tunnel
