package replicas

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the registry and of forwarding to peers.
type Metrics struct {
	// Forwards counts requests sent to peers, by result: ok, not_connected
	// (the peer no longer holds the agent), unreachable (could not
	// connect), error.
	Forwards *prometheus.CounterVec
	// RegistryErrors counts failed Redis operations, by op: register,
	// refresh, unregister, lookup.
	RegistryErrors *prometheus.CounterVec
	// RegistryUp is 1 while the last Redis operation succeeded.
	RegistryUp prometheus.Gauge
}

// Forward results and registry operations (metric label values).
var (
	ForwardResults = []string{"ok", "not_connected", "unreachable", "error"}
	RegistryOps    = []string{"register", "refresh", "unregister", "lookup"}
)

// NewMetrics registers the metrics with reg. kas registers them whether or
// not Redis is configured, so dashboards see zeros rather than nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_peer_forwards_total",
			Help: "Proxied requests sent to another kas replica over its private API, by result (ok, not_connected, unreachable, error).",
		}, []string{"result"}),
		RegistryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_agent_registry_errors_total",
			Help: "Failed agent registry (Redis) operations, by op (register, refresh, unregister, lookup).",
		}, []string{"op"}),
		RegistryUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kas_agent_registry_up",
			Help: "1 while the agent registry (Redis) answers, 0 after a failed operation; without Redis configured, 0.",
		}),
	}
	for _, r := range ForwardResults {
		m.Forwards.WithLabelValues(r)
	}
	for _, op := range RegistryOps {
		m.RegistryErrors.WithLabelValues(op)
	}
	reg.MustRegister(m.Forwards, m.RegistryErrors, m.RegistryUp)
	return m
}
