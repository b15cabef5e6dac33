package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/stack"
)

// BenchmarkCommitToApplied measures, on the real binaries and API server,
// the time from `git commit` to the object being in the cluster: with a
// push webhook (kas polls only every hour) and with polling alone (kas's
// default 20 s period, so about 10 s on average plus the apply).
func BenchmarkCommitToApplied(b *testing.B) {
	for _, c := range []struct {
		name string
		opts stack.Options
	}{
		{"webhook", stack.Options{PollPeriod: time.Hour, WebhookSecret: "bench-secret"}},
		{"poll-20s", stack.Options{PollPeriod: 20 * time.Second}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ns := namespace(b)
			s := newStackWith(b, c.opts, gitopsConfig(ns))
			cms := cp.Clientset().CoreV1().ConfigMaps(ns)
			var lat []time.Duration
			b.ResetTimer()
			for i := range b.N {
				name := fmt.Sprintf("cm-%d", i)
				start := time.Now()
				if _, err := s.Commit(name, map[string]string{"manifests/" + name + ".yaml": configMap(name, "1")}); err != nil {
					b.Fatal(err)
				}
				if c.opts.WebhookSecret != "" {
					req, _ := http.NewRequest("POST", "http://"+s.ObsAddr+"/api/v1/webhooks/git",
						strings.NewReader(`{"object_kind":"push","project":{"path_with_namespace":"`+stack.ConfigProject+`"}}`))
					req.Header.Set("X-Gitlab-Token", "bench-secret")
					req.Header.Set("X-Gitlab-Event", "Push Hook")
					resp, err := http.DefaultClient.Do(req)
					if err != nil || resp.StatusCode != http.StatusAccepted {
						b.Fatalf("webhook: %v %v", err, resp)
					}
					resp.Body.Close()
				}
				testutil.Poll(b, 5*time.Millisecond, 60*time.Second, name+" applied", func() error {
					_, err := cms.Get(b.Context(), name, metav1.GetOptions{})
					return err
				})
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
