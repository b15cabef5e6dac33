// Package version holds the build's version, shared by kas and agentk so
// the tunnel handshake can tell which versions can talk to each other.
package version

// Version is set at build time:
//
//	go build -ldflags "-X kubetunnel/version.Version=v0.1.0" ./cmd/...
var Version = "v0.1.0-dev"
