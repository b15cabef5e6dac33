// Package agentk is the in-cluster agent: it keeps a tunnel to kas open
// (reconnecting with backoff, rotating on GoAway), follows its
// configuration from kas, and serves the requests kas sends through the
// tunnel.
package agentk
