// Package streamhttp speaks HTTP/1.1 over tunnel streams with fewer
// goroutine hand-offs than net/http: kas's Transport writes a request and
// reads its response on the caller's goroutine, and agentk's Serve reads
// requests and runs the handler on the stream's goroutine.
//
// The bytes on the wire are plain HTTP/1.1 (tunnel/PROTOCOL.md), so either
// end interoperates with net/http's client or server; only the cost per
// request changes. On a small GET through the tunnel most of the time is
// goroutines waking each other, not parsing: net/http's client adds a
// read and a write goroutine per connection, and its server a background
// reader per request.
//
// Tunnel protocol 2 (tunnel/wire head frames instead of HTTP/1.1 text)
// rides on the same two halves, so the package stays while protocol 1
// is served: the Transport's stream pool (idle limit and timeout, retry
// of a stream found closed, drain) carries both (RoundTripWire), and the
// Server's per-stream loop (idle tracking for Drain, watching for kas
// closing a stream) hands protocol-2 requests to Other by their first
// byte. Protocol 1 itself is needed for every agentk and kas from before
// protocol 2, and for kas's GoAway request.
package streamhttp
