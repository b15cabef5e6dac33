package usage

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

// Sender sends a usage report to GitLab (*gitlab.Client).
type Sender interface {
	SendUsage(ctx context.Context, data *gitlab.UsageData) error
}

// Config is what a Reporter needs.
type Config struct {
	GitLab Sender
	// Metrics is read for the counters' values (kas's registry).
	Metrics prometheus.Gatherer
	// Period is observability.usage_reporting_period.
	Period time.Duration
	Logger *slog.Logger
}

// Reporter posts, every period, how much each usage counter grew since
// the last report GitLab accepted. An empty report is not sent; a failed
// one is not lost (the next report includes it).
type Reporter struct {
	cfg  Config
	sent map[string]float64 // counter values in the last accepted report
}

// New makes a Reporter; nothing is sent before Run.
func New(cfg Config) *Reporter {
	return &Reporter{cfg: cfg, sent: map[string]float64{}}
}

// Run reports until ctx is done.
func (u *Reporter) Run(ctx context.Context) error {
	t := time.NewTicker(u.cfg.Period)
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

func (u *Reporter) totals() map[string]float64 {
	mfs, err := u.cfg.Metrics.Gather()
	if err != nil {
		u.cfg.Logger.Debug("Gathering metrics for usage reporting", "err", err)
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

func (u *Reporter) report(ctx context.Context) {
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
	if err := u.cfg.GitLab.SendUsage(ctx, data); err != nil {
		u.cfg.Logger.Warn("Could not send usage metrics to GitLab; they are sent with the next report", "err", err)
		return
	}
	u.sent = now
}
