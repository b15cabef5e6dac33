package docs

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The Grafana dashboard has a kas instance and an agent variable, and
// every query follows them: kas's series by instance (and by agent where
// they carry one), agentk's by agent through agentk_agent_info. It has a
// "time since last sync" panel per agent and project.
func TestDashboardVariables(t *testing.T) {
	b, err := os.ReadFile("../../deploy/observability/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Templating struct {
			List []struct {
				Name       string
				Definition string
			}
		}
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Definition
	}
	if !strings.Contains(vars["instance"], "kas_build_info") || !strings.Contains(vars["agent"], "agent") {
		t.Errorf("variables %v: want instance (from kas_build_info) and agent", vars)
	}
	// Series of kas that carry an agent label.
	perAgent := regexp.MustCompile(`\bkas_(gitops_sync_status|gitops_last_sync_timestamp_seconds|agent_connections)\{([^}]*)\}`)
	kasSel := regexp.MustCompile(`\bkas_\w+(\{[^}]*\})?`)
	var sinceSync bool
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range kasSel.FindAllStringSubmatch(tg.Expr, -1) {
				if !strings.Contains(m[1], `instance=~"$instance"`) {
					t.Errorf("panel %q: %s does not follow $instance", p.Title, m[0])
				}
			}
			for _, m := range perAgent.FindAllStringSubmatch(tg.Expr, -1) {
				if !strings.Contains(m[2], `agent=~"$agent"`) {
					t.Errorf("panel %q: %s does not follow $agent", p.Title, m[0])
				}
			}
			if strings.Contains(tg.Expr, "agentk_") && !strings.Contains(tg.Expr, `agentk_agent_info{agent=~"$agent"}`) {
				t.Errorf("panel %q: %s does not follow $agent (join on agentk_agent_info)", p.Title, tg.Expr)
			}
			if strings.Contains(strings.ToLower(p.Title), "time since last sync") &&
				strings.Contains(tg.Expr, "time() - ") && strings.Contains(tg.Expr, "kas_gitops_last_sync_timestamp_seconds") {
				sinceSync = true
			}
		}
	}
	if !sinceSync {
		t.Error(`no "Time since last sync" panel on kas_gitops_last_sync_timestamp_seconds`)
	}
}
