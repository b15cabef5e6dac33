package repos

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gitMetrics observes the fetches of the git poller (gitrepo.PollerConfig
// OnFetch). Repository ids come from the config, so labels stay bounded.
type gitMetrics struct {
	pollDuration *prometheus.HistogramVec
	pollErrors   *prometheus.CounterVec
}

func newGitMetrics(reg prometheus.Registerer, repoIDs []string) *gitMetrics {
	m := &gitMetrics{
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kas_git_poll_duration_seconds",
			Help:    "Duration of the poller's git fetches (periodic and webhook-triggered), failed ones included, by repository id.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"repository"}),
		pollErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_git_poll_errors_total",
			Help: "The poller's git fetches that failed, by repository id.",
		}, []string{"repository"}),
	}
	for _, id := range repoIDs {
		m.pollErrors.WithLabelValues(id)
	}
	reg.MustRegister(m.pollDuration, m.pollErrors)
	return m
}

// onFetch is gitrepo.PollerConfig.OnFetch.
func (m *gitMetrics) onFetch(id string, d time.Duration, err error) {
	m.pollDuration.WithLabelValues(id).Observe(d.Seconds())
	if err != nil {
		m.pollErrors.WithLabelValues(id).Inc()
	}
}
