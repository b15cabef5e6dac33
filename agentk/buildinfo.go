package agentk

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/version"
)

// identityMetrics are agentk's info series. The agent's name is not a
// label on agentk's other series: agentk learns it only from kas, after it
// connects, and a label that appears later would split every series in
// two. agentk_agent_info carries it instead, for joins such as
// `agentk_tunnel_connected * on(instance) group_left(agent) agentk_agent_info`.
type identityMetrics struct {
	agent *prometheus.GaugeVec
}

func newIdentityMetrics(reg prometheus.Registerer) *identityMetrics {
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentk_build_info",
		Help: "Always 1; the labels say which agentk this is: version, go_version and commit (empty when the build recorded none).",
	}, []string{"version", "go_version", "commit"})
	build.WithLabelValues(version.Version, runtime.Version(), version.BuildCommit()).Set(1)
	m := &identityMetrics{agent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agentk_agent_info",
		Help: "1 for the agent name kas gave this agentk with its configuration (valid or not); absent until the first configuration arrives.",
	}, []string{"agent"})}
	reg.MustRegister(build, m.agent)
	return m
}

// setAgent records the agent name kas gave; the name does not change for
// a token, but if it does only the new one is shown.
func (m *identityMetrics) setAgent(name string) {
	if name == "" {
		return
	}
	m.agent.Reset()
	m.agent.WithLabelValues(name).Set(1)
}
