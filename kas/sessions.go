package kas

import (
	"github.com/prometheus/client_golang/prometheus"

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

// sessionRegistry is the sessions.Registry of a Server, with the short
// names reload.go and the package's tests use.
type sessionRegistry struct {
	*sessions.Registry
	// streamsOpen is kas_tunnel_streams_open, by direction.
	streamsOpen *prometheus.GaugeVec
}

// agentSession is a sessions.Session (the same value, converted) with the
// method names reload.go uses.
type agentSession sessions.Session

func (s *agentSession) revoke(reason string)          { (*sessions.Session)(s).Revoke(reason) }
func (s *agentSession) requestRotation(reason string) { (*sessions.Session)(s).RequestRotation(reason) }

func newSessionRegistry(cfg sessions.Config) *sessionRegistry {
	return &sessionRegistry{Registry: sessions.New(cfg), streamsOpen: cfg.Metrics.StreamsOpen}
}

// pick is Registry.Pick.
func (r *sessionRegistry) pick(agent string) (*agentSession, error) {
	s, err := r.Pick(agent)
	return (*agentSession)(s), err
}

// sessionsOf is Registry.SessionsOf.
func (r *sessionRegistry) sessionsOf(agent string) []*agentSession {
	list := r.SessionsOf(agent)
	out := make([]*agentSession, len(list))
	for i, s := range list {
		out[i] = (*agentSession)(s)
	}
	return out
}

// agents is Registry.Agents.
func (r *sessionRegistry) agents() []string { return r.Agents() }

// sessionLimits are the caps the sessions enforce, as a reload last set
// them.
type sessionLimits struct{ s *Server }

func (l sessionLimits) MaxAgentStreamsPerConnection() int {
	return l.s.limits().MaxAgentStreamsPerConnection
}
