// Package sessions keeps kas's live agent sessions: the agentk
// connections each agent has here, which of them a proxied request goes
// through, and each session's life from connect to close.
//
//	r := sessions.New(sessions.Config{MaxConnectionAge: ..., DrainTimeout: ..., Limits: ..., Metrics: sessions.NewMetrics(reg)})
//	// per agent connection (tunnel.Server's OnSession):
//	sess := r.Add(ts)
//	defer r.Remove(sess)
//	go r.AcceptStreams(sess, deliver) // the streams agentk opens (gRPC)
//	r.Serve(ctx, sess, log)           // until rotated, revoked or ctx is done; drained
//
// A session's life is one state under its mutex that only moves forward,
// driven by events (lifecycle.go):
//
//	active ──drain (max_connection_age, a config reload, kas stopping)──▶ draining ──▶ closing ──▶ (closed)
//	active ──revoke (a token kas no longer accepts)─────────────────────────────────▶ closing ──▶ (closed)
//
// Independently, agentk may say it is stopping (yamux GoAway) and proves
// itself by opening its gRPC stream; Pick reads all of it to choose the
// session a request goes through. The Registry is kasproxy.Tunnels: its
// RoundTripper sends a request again on another session when agentk
// refused it unserved.
//
// The package knows the rest of kas only through Config: the caps in
// force (Limits), the other replicas holding an agent (Peers), who hears
// that an agent connected or left (OnAgent), and the metrics.
package sessions
