package usage

import (
	"context"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/internal/gitlab"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/fakegitlab"
)

// TestUsageReporting: the growth of the proxy request counter is posted
// to GitLab's usage_metrics; nothing is sent when nothing happened; a
// report GitLab did not get is included in the next one.
func TestUsageReporting(t *testing.T) {
	gl := fakegitlab.New(t)
	u, _ := url.Parse(gl.URL)
	c, err := gitlab.New(gitlab.Config{Address: u, Secret: gl.Secret, HTTPClient: gl.Client()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kas_proxy_requests_total"}, []string{"code", "verb"})
	reg.MustRegister(requests)
	logger, _ := tu.NewLogger(t)
	r := New(Config{GitLab: c, Metrics: reg, Logger: logger})
	ctx := context.Background()

	r.report(ctx)
	if n := gl.Calls(gitlab.PathUsageMetrics); n != 0 {
		t.Fatalf("an empty report was sent (%d)", n)
	}
	requests.WithLabelValues("200", "get").Add(2)
	requests.WithLabelValues("403", "list").Inc()
	r.report(ctx)
	r.report(ctx) // nothing new: not sent
	got := gl.Usage()
	if len(got) != 1 || got[0].Counters[usageProxyRequests] != 3 {
		t.Fatalf("usage received %+v, want one report of 3 proxied requests", got)
	}
	gl.SetDown(true)
	requests.WithLabelValues("200", "get").Add(4)
	r.report(ctx)
	gl.SetDown(false)
	requests.WithLabelValues("200", "get").Inc()
	r.report(ctx)
	got = gl.Usage()
	if len(got) != 2 || got[1].Counters[usageProxyRequests] != 5 {
		t.Fatalf("usage received %+v, want a second report of 5 (4 while GitLab was down + 1)", got)
	}
}
