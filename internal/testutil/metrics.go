package testutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"kubetunnel/internal/testutil/metrics"
)

// Series returns the series of the metric family name that has label set
// to value, or nil when there is none (yet): a shorthand for
// metrics.Gather(t, g).Series(name, label, value).
func Series(t testing.TB, g prometheus.Gatherer, name, label, value string) *dto.Metric {
	t.Helper()
	return metrics.Gather(t, g).Series(name, label, value)
}
