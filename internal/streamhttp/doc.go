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
package streamhttp
