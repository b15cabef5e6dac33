// Package metrics reads Prometheus metrics in tests the way a scraper
// does: from a /metrics endpoint, parsed with expfmt, or from a registry.
// Series are picked by family name and label pairs, so a test names what
// a dashboard would query.
package metrics

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is one scrape: metric family name → family.
type Families map[string]*dto.MetricFamily

// Scrape reads url (a /metrics endpoint in the Prometheus text format).
func Scrape(url string) (Families, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	return mfs, nil
}

// MustScrape is Scrape that fails the test on error.
func MustScrape(t testing.TB, url string) Families {
	t.Helper()
	f, err := Scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Gather reads a registry.
func Gather(t testing.TB, g prometheus.Gatherer) Families {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	f := make(Families, len(mfs))
	for _, mf := range mfs {
		f[mf.GetName()] = mf
	}
	return f
}

// Has reports whether the family name is exposed (with or without series).
func (f Families) Has(name string) bool { return f[name] != nil }

// Series is the first series of name whose labels include every pair of
// labels (name, value, name, value, …), or nil when there is none.
func (f Families) Series(name string, labels ...string) *dto.Metric {
	for _, m := range f.matching(name, labels) {
		return m
	}
	return nil
}

// Value is the value of Series(name, labels...) and whether it exists.
func (f Families) Value(name string, labels ...string) (float64, bool) {
	m := f.Series(name, labels...)
	if m == nil {
		return 0, false
	}
	return value(m), true
}

// Get is Value without the second result: 0 for a missing series.
func (f Families) Get(name string, labels ...string) float64 {
	v, _ := f.Value(name, labels...)
	return v
}

// Sum adds up every series of name whose labels include labels.
func (f Families) Sum(name string, labels ...string) float64 {
	var sum float64
	for _, m := range f.matching(name, labels) {
		sum += value(m)
	}
	return sum
}

func (f Families) matching(name string, labels []string) []*dto.Metric {
	if len(labels)%2 != 0 {
		panic(fmt.Sprintf("metrics: odd label list %q", labels))
	}
	var out []*dto.Metric
	for _, m := range f[name].GetMetric() {
		if hasLabels(m, labels) {
			out = append(out, m)
		}
	}
	return out
}

func hasLabels(m *dto.Metric, labels []string) bool {
next:
	for i := 0; i < len(labels); i += 2 {
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				continue next
			}
		}
		return false
	}
	return true
}

// value is a counter's, gauge's or untyped series' value, or a
// histogram's or summary's observation count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Summary != nil:
		return float64(m.GetSummary().GetSampleCount())
	}
	return 0
}
