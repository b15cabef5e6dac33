// Package usage reports kas's usage counters to GitLab (the
// usage_metrics internal API), as GitLab's own kas does: with gitlab: in
// the kas config, every observability.usage_reporting_period.
//
// The counters are read from kas's Prometheus registry (Config.Metrics),
// so nothing in kas counts twice: k8s_api_proxy_request is the sum of
// kas_proxy_requests_total.
package usage
