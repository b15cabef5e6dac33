package gitlab

import (
	"encoding/json"
	"testing"
)

func TestIDNumberOrString(t *testing.T) {
	for in, want := range map[string]ID{`7`: 7, `"7"`: 7, ` 12 `: 12, `"9007199254740993"`: 9007199254740993} {
		var id ID
		if err := json.Unmarshal([]byte(in), &id); err != nil || id != want {
			t.Errorf("%s: got %d, %v; want %d", in, id, err, want)
		}
	}
	for _, in := range []string{`"x"`, `1.5`, `true`, `"1e3"`, `null`} {
		var id ID
		if err := json.Unmarshal([]byte(in), &id); err == nil && in != `null` {
			t.Errorf("%s accepted as %d", in, id)
		}
	}
}

func TestParseAgentInfo(t *testing.T) {
	good := `{"project_id":"3","agent_id":5,"agent_name":"prod-1","gitaly_info":{"address":"tcp://g"},"gitaly_repository":{"gl_project_path":"group/sub/config"},"default_branch":"main"}`
	a, err := ParseAgentInfo([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if a.AgentID != 5 || a.ProjectID != 3 || a.AgentName != "prod-1" || a.ConfigProject() != "group/sub/config" {
		t.Fatalf("parsed %+v", a)
	}
	for name, body := range map[string]string{
		"no agent id":      `{"project_id":3,"agent_name":"a","gitaly_repository":{"gl_project_path":"g/p"}}`,
		"no project id":    `{"agent_id":3,"agent_name":"a","gitaly_repository":{"gl_project_path":"g/p"}}`,
		"name with slash":  `{"project_id":3,"agent_id":5,"agent_name":"../x","gitaly_repository":{"gl_project_path":"g/p"}}`,
		"path traversal":   `{"project_id":3,"agent_id":5,"agent_name":"a","gitaly_repository":{"gl_project_path":"g/../p"}}`,
		"absolute path":    `{"project_id":3,"agent_id":5,"agent_name":"a","gitaly_repository":{"gl_project_path":"/g/p"}}`,
		"no path":          `{"project_id":3,"agent_id":5,"agent_name":"a"}`,
		"not json":         `<html>`,
		"id not a number":  `{"project_id":"x","agent_id":5,"agent_name":"a","gitaly_repository":{"gl_project_path":"g/p"}}`,
		"name uppercase":   `{"project_id":3,"agent_id":5,"agent_name":"Prod","gitaly_repository":{"gl_project_path":"g/p"}}`,
		"query in path":    `{"project_id":3,"agent_id":5,"agent_name":"a","gitaly_repository":{"gl_project_path":"g/p?x=1"}}`,
		"negative agentid": `{"project_id":3,"agent_id":-5,"agent_name":"a","gitaly_repository":{"gl_project_path":"g/p"}}`,
	} {
		if a, err := ParseAgentInfo([]byte(body)); err == nil {
			t.Errorf("%s: accepted as %+v", name, a)
		}
	}
}

func TestUsageDataIsEmpty(t *testing.T) {
	if !(&UsageData{Counters: map[string]int64{"k8s_api_proxy_request": 0}}).IsEmpty() {
		t.Error("zero counters are not empty")
	}
	if (&UsageData{UniqueCounters: map[string][]int64{"agent_users": {1}}}).IsEmpty() {
		t.Error("a unique counter is empty")
	}
}

// FuzzParseAgentInfo: GitLab's answer is network input. Whatever it is,
// the parser does not panic, and what it accepts is safe to put into a
// path and a URL.
func FuzzParseAgentInfo(f *testing.F) {
	f.Add([]byte(`{"project_id":"3","agent_id":5,"agent_name":"prod-1","gitaly_repository":{"gl_project_path":"group/sub/config"},"default_branch":"main"}`))
	f.Add([]byte(`{"project_id":3,"agent_id":"5","agent_name":"a","gitaly_repository":{"gl_project_path":"g/.p"}}`))
	f.Add([]byte(`{"project_id":1e3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := ParseAgentInfo(body)
		if err == nil {
			if a.AgentID <= 0 || a.ProjectID <= 0 || !agentNameRE.MatchString(a.AgentName) || !ValidProjectPath(a.ConfigProject()) {
				t.Fatalf("accepted %+v", a)
			}
		}
		p, err := ParseProjectInfo(body)
		if err == nil && (p.ProjectID <= 0 || !ValidProjectPath(p.FullPath())) {
			t.Fatalf("accepted %+v", p)
		}
	})
}

// FuzzParseAllowedAgents: allowed_agents's answer is network input.
func FuzzParseAllowedAgents(f *testing.F) {
	f.Add([]byte(`{"allowed_agents":[{"id":1,"config_project":{"id":"2"},"configuration":{"default_namespace":"x","access_as":{"ci_job":{}}}}],"job":{"id":3},"pipeline":{"id":4},"project":{"id":5,"groups":[{"id":6}]},"user":{"id":7,"username":"u"},"environment":{"slug":"s","tier":"t"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := ParseAllowedAgents(body)
		if err != nil {
			return
		}
		if a.Job.ID <= 0 || a.User.ID <= 0 || a.User.Username == "" {
			t.Fatalf("accepted %+v", a)
		}
		for _, ag := range a.AllowedAgents {
			if ag.ID <= 0 || ag.ConfigProject.ID <= 0 {
				t.Fatalf("accepted agent %+v", ag)
			}
		}
	})
}
