package agentk

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"kubetunnel/tunnel"
)

// The cluster's version is looked up once and reused; a failed lookup is
// not retried on every dial (it would delay each reconnect).
func TestAgentMetaCachesClusterVersion(t *testing.T) {
	calls := 0
	fail := true
	m := &agentMeta{podNamespace: "ns", podName: "pod", gitCommit: "abc", logger: slog.New(slog.DiscardHandler),
		clusterVersion: func(context.Context) (string, error) {
			calls++
			if fail {
				return "", errors.New("API server down")
			}
			return "v1.37.0", nil
		}}
	var h tunnel.Hello
	m.fill(context.Background(), &h)
	m.fill(context.Background(), &h)
	if calls != 1 || h.KubernetesVersion != "" || h.PodName != "pod" || h.PodNamespace != "ns" || h.GitCommit != "abc" {
		t.Errorf("after a failed lookup: %d calls, hello %+v", calls, h)
	}
	fail = false
	m.next = m.next.Add(-clusterVersionRetry) // the retry wait is over
	m.fill(context.Background(), &h)
	m.fill(context.Background(), &h)
	if calls != 2 || h.KubernetesVersion != "v1.37.0" {
		t.Errorf("after a good lookup: %d calls, version %q", calls, h.KubernetesVersion)
	}
}
