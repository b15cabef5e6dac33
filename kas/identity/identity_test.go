package identity

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// A standalone agent reads its config project and the repositories
// agents[].projects gives it, nothing else.
func TestMayRead(t *testing.T) {
	a := Agent{Key: "prod", Name: "prod", ConfigProject: "group/agents", Projects: []string{"group/apps"}}
	for id, want := range map[string]bool{"group/agents": true, "group/apps": true, "group/other": false, "": false} {
		if got := a.MayRead(id); got != want {
			t.Errorf("MayRead(%q) = %v, want %v", id, got, want)
		}
	}
}

// Log lines name the agent by name and GitLab id, never by anything else
// it carries.
func TestLogAttrs(t *testing.T) {
	a := Agent{Key: "7", Name: "prod", ID: 7, ConfigProject: "group/agents"}
	if got := a.LogAttrs(); !slices.Equal(got, []any{"agent", "prod", "agent_id", int64(7), "project", "group/agents"}) {
		t.Errorf("LogAttrs = %v", got)
	}
	if got := (Agent{Name: "prod"}).IDAttrs(); !slices.Equal(got, []any{"agent", "prod"}) {
		t.Errorf("standalone IDAttrs = %v", got)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "a", a)
	if line := buf.String(); !strings.Contains(line, "a.name=prod a.id=7 a.config_project=group/agents") {
		t.Errorf("an Agent in a log line: %s", line)
	}
}
