package sessions

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the sessions' metrics.
type Metrics struct {
	// Connected is kas_connected_agents: live sessions, one per connected
	// agentk replica.
	Connected prometheus.Gauge
	// StreamsOpened and StreamsOpen count tunnel streams by direction:
	// from_agent (gRPC from agentk), to_agent (proxied requests).
	StreamsOpened *prometheus.CounterVec
	StreamsOpen   *prometheus.GaugeVec
	// StreamsRefused counts agent-opened streams over the per-connection
	// cap.
	StreamsRefused prometheus.Counter
}

// Stream directions (the direction label).
const (
	toAgent   = "to_agent"
	fromAgent = "from_agent"
)

// NewMetrics registers the sessions' metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kas_connected_agents",
			Help: "Live agent connections (one per connected agentk replica).",
		}),
		StreamsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_tunnel_streams_opened_total",
			Help: "Tunnel streams opened, by direction (from_agent: gRPC from agentk; to_agent: proxied requests).",
		}, []string{"direction"}),
		StreamsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kas_tunnel_streams_open",
			Help: "Tunnel streams currently open, by direction.",
		}, []string{"direction"}),
		StreamsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kas_tunnel_streams_refused_total",
			Help: "Streams agentk opened over limits.max_agent_streams_per_connection, closed at once.",
		}),
	}
	for _, d := range []string{toAgent, fromAgent} {
		m.StreamsOpened.WithLabelValues(d)
		m.StreamsOpen.WithLabelValues(d)
	}
	reg.MustRegister(m.Connected, m.StreamsOpened, m.StreamsOpen, m.StreamsRefused)
	return m
}
