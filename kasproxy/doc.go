// Package kasproxy is the Kubernetes API proxy in kas: it authenticates
// callers (kubectl, CI jobs), picks a connected agent and streams their
// requests to it through the tunnel.
package kasproxy
