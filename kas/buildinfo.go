package kas

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"kubetunnel/version"
)

// newBuildInfo is kas_build_info: always 1, the labels say which kas runs.
func newBuildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kas_build_info",
		Help: "Always 1; the labels say which kas this is: version, go_version and commit (empty when the build recorded none).",
	}, []string{"version", "go_version", "commit"})
	g.WithLabelValues(version.Version, runtime.Version(), version.BuildCommit()).Set(1)
	return g
}

// exposedGatherer is what /metrics serves: the server's registry plus
// kas_build_info and kas_agent_connections, without kas_agent_registry_up when no Redis is
// configured. That gauge says whether Redis answers; a single kas without
// Redis has nothing to answer, and a 0 there would look like an outage.
func (s *Server) exposedGatherer() prometheus.Gatherer {
	build := prometheus.NewRegistry()
	build.MustRegister(newBuildInfo(), agentConnections{s: s, desc: prometheus.NewDesc("kas_agent_connections",
		"Live connections of each configured agent to this kas replica (one per agentk replica).", []string{"agent"}, nil)})
	g := prometheus.Gatherers{s.metrics, build}
	if s.cfg.Redis != nil && s.cfg.Redis.Address != "" {
		return g
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		out := mfs[:0]
		for _, mf := range mfs {
			if mf.GetName() != "kas_agent_registry_up" {
				out = append(out, mf)
			}
		}
		return out, err
	})
}

// agentConnections is kas_agent_connections{agent}: live connections per
// configured agent, read from the sessions at scrape time. One series per
// agents[] entry, so its cardinality is the config's, and an agent with
// no connection shows 0 rather than disappearing.
type agentConnections struct {
	s    *Server
	desc *prometheus.Desc
}

func (c agentConnections) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c agentConnections) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.s.registry.Agents() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.s.sessions.Count(a.Key)), a.Key)
	}
}
