package kas

// SessionProtocols lists the tunnel protocol (1 or 2, tunnel/PROTOCOL.md)
// that each live connection of agent negotiated with this kas, in no
// particular order. The handshake picks the newest protocol both ends
// offer, and nothing a caller sends or receives shows which one that was;
// tests of the negotiation and of a rollback (an agentk that offers only
// protocol 1, AGENTK_PROXY_PROTOCOL=1) read it here.
func (s *Server) SessionProtocols(agent string) []int {
	var ps []int
	for _, sess := range s.sessions.SessionsOf(agent) {
		ps = append(ps, sess.Protocol)
	}
	return ps
}
