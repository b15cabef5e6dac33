// Package kas is the agent server: it accepts agentk connections through
// the tunnel, authenticates agents against its registry, delivers each
// agent's configuration from git and keeps the live sessions that the
// Kubernetes API proxy sends requests through.
package kas
