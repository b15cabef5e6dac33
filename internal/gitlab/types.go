package gitlab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// ID is a GitLab numeric id. GitLab sends ids as JSON numbers or, through
// protojson, as strings ("7"): both are accepted.
type ID int64

// UnmarshalJSON accepts 7 and "7".
func (id *ID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(s)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("id %q is not an integer", b)
	}
	*id = ID(n)
	return nil
}

// GitalyRepository names a project's repository; kas uses only
// GlProjectPath (the project's full path), as it reads repositories over
// HTTPS git rather than from Gitaly.
type GitalyRepository struct {
	StorageName   string `json:"storage_name,omitempty"`
	RelativePath  string `json:"relative_path,omitempty"`
	GlRepository  string `json:"gl_repository,omitempty"`
	GlProjectPath string `json:"gl_project_path"`
}

// AgentInfo is agent_info's answer: the agent that owns a token.
type AgentInfo struct {
	ProjectID        ID               `json:"project_id"`
	AgentID          ID               `json:"agent_id"`
	AgentName        string           `json:"agent_name"`
	GitalyRepository GitalyRepository `json:"gitaly_repository"`
	DefaultBranch    string           `json:"default_branch"`
}

// ConfigProject is the full path of the project holding the agent's
// .gitlab/agents/<name>/config.yaml.
func (a *AgentInfo) ConfigProject() string { return a.GitalyRepository.GlProjectPath }

// ProjectInfo is project_info's answer: a project the agent may read.
type ProjectInfo struct {
	ProjectID        ID               `json:"project_id"`
	GitalyRepository GitalyRepository `json:"gitaly_repository"`
	DefaultBranch    string           `json:"default_branch"`
}

// FullPath is the project's full path (group/subgroup/project).
func (p *ProjectInfo) FullPath() string { return p.GitalyRepository.GlProjectPath }

// agentNameRE is GitLab's rule for agent names (a DNS label): names end up
// in paths (.gitlab/agents/<name>/config.yaml), so kas checks it too.
var agentNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// maxProjectPathLen bounds a project's full path.
const maxProjectPathLen = 1024

// ValidProjectPath reports whether p is a plausible GitLab project full
// path: segments of letters, digits, '_', '-' and '.', no empty, '.' or
// '..' segment, no leading or trailing slash. kas puts it into git URLs
// and cache directory names.
func ValidProjectPath(p string) bool {
	if p == "" || len(p) > maxProjectPathLen {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, ".") {
			return false
		}
		for _, r := range seg {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.'
			if !ok {
				return false
			}
		}
	}
	return true
}

// ParseAgentInfo decodes and checks agent_info's answer.
func ParseAgentInfo(body []byte) (*AgentInfo, error) {
	var a AgentInfo
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("agent_info: %w", err)
	}
	switch {
	case a.AgentID <= 0:
		return nil, fmt.Errorf("agent_info: agent_id %d is not positive", a.AgentID)
	case a.ProjectID <= 0:
		return nil, fmt.Errorf("agent_info: project_id %d is not positive", a.ProjectID)
	case len(a.AgentName) > 63 || !agentNameRE.MatchString(a.AgentName):
		return nil, fmt.Errorf("agent_info: agent_name %q is not a valid agent name", a.AgentName)
	case !ValidProjectPath(a.GitalyRepository.GlProjectPath):
		return nil, fmt.Errorf("agent_info: gitaly_repository.gl_project_path %q is not a project path", a.GitalyRepository.GlProjectPath)
	}
	return &a, nil
}

// ParseProjectInfo decodes and checks project_info's answer.
func ParseProjectInfo(body []byte) (*ProjectInfo, error) {
	var p ProjectInfo
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("project_info: %w", err)
	}
	switch {
	case p.ProjectID <= 0:
		return nil, fmt.Errorf("project_info: project_id %d is not positive", p.ProjectID)
	case !ValidProjectPath(p.GitalyRepository.GlProjectPath):
		return nil, fmt.Errorf("project_info: gitaly_repository.gl_project_path %q is not a project path", p.GitalyRepository.GlProjectPath)
	}
	return &p, nil
}

// AgentConfiguration is agent_configuration's body: the agent's config as
// JSON, posted on every new config commit.
type AgentConfiguration struct {
	AgentID     int64           `json:"agent_id"`
	AgentConfig json.RawMessage `json:"agent_config"`
}

// UsageData is usage_metrics's body. Counters are events since the last
// report; UniqueCounters lists distinct ids (e.g. agent ids) seen.
type UsageData struct {
	Counters       map[string]int64   `json:"counters,omitempty"`
	UniqueCounters map[string][]int64 `json:"unique_counters,omitempty"`
}

// IsEmpty reports whether there is nothing to send.
func (u *UsageData) IsEmpty() bool {
	for _, v := range u.Counters {
		if v != 0 {
			return false
		}
	}
	for _, v := range u.UniqueCounters {
		if len(v) != 0 {
			return false
		}
	}
	return true
}
