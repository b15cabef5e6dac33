package kas

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/internal/gitlab"
)

// usageProxyRequests is the usage counter kas reports to GitLab, under
// GitLab's name (GitLab refuses names it does not know).
const usageProxyRequests = "k8s_api_proxy_request"

// usageSources maps each usage counter to the kas metric it is read from
// (summed over labels).
var usageSources = map[string]string{
	usageProxyRequests: "kas_proxy_requests_total",
}

// usageReporter posts, every period, how much each usage counter grew
// since the last report GitLab accepted. An empty report is not sent; a
// failed one is not lost (the next report includes it).
type usageReporter struct {
	client *gitlab.Client
	gather prometheus.Gatherer
	period time.Duration
	logger *slog.Logger
	sent   map[string]float64 // counter values in the last accepted report
}

func newUsageReporter(client *gitlab.Client, gather prometheus.Gatherer, period time.Duration, logger *slog.Logger) *usageReporter {
	return &usageReporter{client: client, gather: gather, period: period, logger: logger, sent: map[string]float64{}}
}

// Run reports until ctx is done.
func (u *usageReporter) Run(ctx context.Context) error {
	t := time.NewTicker(u.period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			u.report(ctx)
		}
	}
}

func (u *usageReporter) totals() map[string]float64 {
	mfs, err := u.gather.Gather()
	if err != nil {
		u.logger.Debug("Gathering metrics for usage reporting", "err", err)
	}
	byName := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				byName[mf.GetName()] += c.GetValue()
			}
		}
	}
	out := map[string]float64{}
	for usage, metric := range usageSources {
		out[usage] = byName[metric]
	}
	return out
}

func (u *usageReporter) report(ctx context.Context) {
	now := u.totals()
	data := &gitlab.UsageData{Counters: map[string]int64{}}
	for k, v := range now {
		if d := int64(v - u.sent[k]); d > 0 {
			data.Counters[k] = d
		}
	}
	if data.IsEmpty() {
		return
	}
	if err := u.client.SendUsage(ctx, data); err != nil {
		u.logger.Warn("Could not send usage metrics to GitLab; they are sent with the next report", "err", err)
		return
	}
	u.sent = now
}
