// Package kasproxy is the Kubernetes API proxy in kas: it authenticates
// callers (kubectl, CI jobs), picks a connected agent and streams their
// requests to it through the tunnel, upgrades (exec, attach,
// port-forward) included.
//
// The URL scheme is <listen URL>/agents/<agent-name>/<API path>: kubectl
// takes a server URL with a path, so a kubeconfig whose server is
// https://kas:8154/agents/prod reaches the cluster of agent "prod".
package kasproxy
