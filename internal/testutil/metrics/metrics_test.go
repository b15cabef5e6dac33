package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kubetunnel/internal/testutil/metrics"
)

func TestScrapeAndGatherAgree(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total"}, []string{"repository", "result"})
	reg.MustRegister(c, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "y"}, func() float64 { return 2.5 }))
	c.WithLabelValues("a", "ok").Add(3)
	c.WithLabelValues("a", "error").Add(1)
	c.WithLabelValues("b", "ok").Add(5)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "z_seconds"})
	reg.MustRegister(h)
	h.Observe(1)
	h.Observe(2)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	for name, f := range map[string]metrics.Families{
		"scrape": metrics.MustScrape(t, srv.URL),
		"gather": metrics.Gather(t, reg),
	} {
		if v, ok := f.Value("x_total", "repository", "a", "result", "ok"); !ok || v != 3 {
			t.Errorf("%s: x_total{a,ok} = %v, %v; want 3", name, v, ok)
		}
		if got := f.Sum("x_total", "repository", "a"); got != 4 {
			t.Errorf("%s: sum of x_total{repository=a} = %v, want 4", name, got)
		}
		if got := f.Sum("x_total"); got != 9 {
			t.Errorf("%s: sum of x_total = %v, want 9", name, got)
		}
		if got := f.Get("y"); got != 2.5 {
			t.Errorf("%s: y = %v, want 2.5", name, got)
		}
		if got := f.Get("z_seconds"); got != 2 {
			t.Errorf("%s: z_seconds count = %v, want 2", name, got)
		}
		if _, ok := f.Value("x_total", "repository", "c"); ok {
			t.Errorf("%s: a series for repository c", name)
		}
		if !f.Has("x_total") || f.Has("nope") {
			t.Errorf("%s: Has", name)
		}
	}
}

func TestScrapeErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.Write([]byte("x_total{ 1\n"))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	if _, err := metrics.Scrape(srv.URL + "/bad"); err == nil {
		t.Error("a malformed exposition parsed")
	}
	if _, err := metrics.Scrape(srv.URL + "/missing"); err == nil {
		t.Error("a 404 parsed")
	}
}
