package kas

import (
	"kubetunnel/kas/sessions"
	"kubetunnel/kasproxy"
)

// The live agent sessions and their lifecycle are package kas/sessions;
// these are the names package kas exports and uses for them.

// ErrAgentNotConnected is a request for an agent with no live session.
var ErrAgentNotConnected = kasproxy.ErrAgentNotConnected

// DrainConfig times the end of an agent session; zero fields take the
// defaults. agent.listen.drain_timeout bounds the whole drain.
type DrainConfig = sessions.DrainConfig

// DrainConfig defaults.
const (
	DefaultHandoverWait        = sessions.DefaultHandoverWait
	DefaultHandoverCheckPeriod = sessions.DefaultHandoverCheckPeriod
	DefaultCloseGrace          = sessions.DefaultCloseGrace
	DefaultIdleSweepPeriod     = sessions.DefaultIdleSweepPeriod
	DefaultGoAwayTimeout       = sessions.DefaultGoAwayTimeout
	DefaultPeerLookupTimeout   = sessions.DefaultPeerLookupTimeout
)

// sessionLimits are the caps the sessions enforce, as a reload last set
// them.
type sessionLimits struct{ s *Server }

func (l sessionLimits) MaxAgentStreamsPerConnection() int {
	return l.s.limits().MaxAgentStreamsPerConnection
}
