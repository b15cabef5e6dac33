package docs

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Every alert rule has a runbook_url that points at a section of
// docs/runbooks.md, and every section there is an alert's.
func TestAlertRunbooks(t *testing.T) {
	b, err := os.ReadFile("../../deploy/observability/prometheus-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\w+)$`).FindAllStringSubmatch(string(doc), -1) {
		sections[strings.ToLower(m[1])] = true
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[strings.ToLower(r.Alert)] = true
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], "docs/runbooks.md#")
			if !ok || anchor != strings.ToLower(r.Alert) || !sections[anchor] {
				t.Errorf("alert %s: runbook_url %q, want docs/runbooks.md#%s with that section in docs/runbooks.md", r.Alert, r.Annotations["runbook_url"], strings.ToLower(r.Alert))
			}
		}
	}
	for s := range sections {
		if !alerts[s] {
			t.Errorf("docs/runbooks.md has a section %q for no alert", s)
		}
	}
}
