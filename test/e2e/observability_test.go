package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/internal/testutil/stack"
)

var metricName = regexp.MustCompile(`\b(?:kas|agentk)_[a-z0-9_]+`)

// Every metric the docs, the Grafana dashboard and the alert rules name is
// one kas or agentk really exposes, after a GitOps sync and a proxied
// request have given every labelled family a value.
func TestDocumentedMetricsExist(t *testing.T) {
	ns := namespace(t)
	s := newStackWith(t, stack.Options{WebhookSecret: "s"}, gitopsConfig(ns))
	c, err := s.Commit("one configmap", map[string]string{"manifests/a.yaml": configMap("cm-a", "1")})
	if err != nil {
		t.Fatal(err)
	}
	waitSync(t, s, c, "synced")
	mustKubectl(t, s.Kubeconfig, "", "get", "ns", "default")
	resp, err := http.Post("http://"+s.ObsAddr+"/api/v1/webhooks/git", "application/json",
		strings.NewReader(`{"object_kind":"push","project":{"path_with_namespace":"nothing/here"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	documented := map[string]string{} // metric → the file naming it
	root := filepath.Join("..", "..")
	for _, file := range []string{"README.md", "docs/gitops.md", "deploy/observability/grafana-dashboard.json", "deploy/observability/prometheus-rules.yaml"} {
		f, err := os.Open(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		switch filepath.Ext(file) {
		case ".json":
			var dash struct {
				Panels []struct {
					Title   string
					Targets []struct{ Expr string }
				}
			}
			if err := json.Unmarshal(b, &dash); err != nil || len(dash.Panels) == 0 {
				t.Errorf("%s: not a dashboard with panels: %v", file, err)
			}
		case ".yaml":
			var rules struct {
				Groups []struct {
					Rules []struct{ Alert, Expr string }
				}
			}
			if err := yaml.Unmarshal(b, &rules); err != nil || len(rules.Groups) == 0 {
				t.Errorf("%s: not a rule file: %v", file, err)
			}
			for _, g := range rules.Groups {
				for _, r := range g.Rules {
					if r.Alert == "" || r.Expr == "" {
						t.Errorf("%s: rule without alert or expr: %+v", file, r)
					}
				}
			}
		}
		found := metricName.FindAllString(string(b), -1)
		if len(found) == 0 {
			t.Errorf("%s names no metric", file)
		}
		for _, n := range found {
			documented[n] = file
		}
	}

	// The sync's status report and the next poll fill the last labelled
	// families shortly after the sync.
	testutil.EventuallyNoError(t, 10*time.Second, "every documented metric exposed", func() error {
		exposed := map[string]bool{}
		for _, url := range []string{"http://" + s.ObsAddr + "/metrics", "http://" + s.AgentObs + "/metrics"} {
			for n := range metrics.MustScrape(t, url) {
				exposed[n] = true
			}
		}
		// This stack runs one kas without Redis, which does not expose the
		// Redis registry's gauge (internal/integration/replicas_integration_test.go checks it with Redis up and down).
		exposed["kas_agent_registry_up"] = true
		var missing []string
		for n, file := range documented {
			base := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if trimmed, ok := strings.CutSuffix(n, suffix); ok && exposed[trimmed] {
					base = trimmed
				}
			}
			if !exposed[base] {
				missing = append(missing, fmt.Sprintf("%s names %s", file, n))
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("neither kas nor agentk exposes: %s", strings.Join(missing, "; "))
		}
		return nil
	})
}
