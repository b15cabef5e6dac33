package agentcfg

import (
	"fmt"
	"strings"
)

// The sections below are GitLab's (GitLab 16.x, and newer keys of
// remote_development) that this agent does not implement. They are typed so
// that a misspelt key inside them is still an error with its line and
// path; a field tagged `agentcfg:"ignored"` is listed in Config.Ignored
// when a file sets it, and the agent warns about it once per commit. They
// do not travel to agentk.

// ContainerScanning is GitLab's operational container scanning (also the
// starboard section of GitLab 15.x).
type ContainerScanning struct {
	VulnerabilityReport  VulnerabilityReport  `yaml:"vulnerability_report" json:"vulnerability_report"`
	Cadence              string               `yaml:"cadence" json:"cadence"`
	ResourceRequirements ResourceRequirements `yaml:"resource_requirements" json:"resource_requirements"`
}

// VulnerabilityReport selects what container scanning looks at.
type VulnerabilityReport struct {
	Namespaces []string                  `yaml:"namespaces" json:"namespaces"`
	Filters    []ContainerScanningFilter `yaml:"filters" json:"filters"`
}

// ContainerScanningFilter is one filter of a vulnerability report.
type ContainerScanningFilter struct {
	Namespaces []string `yaml:"namespaces" json:"namespaces"`
	Resources  []string `yaml:"resources" json:"resources"`
	Containers []string `yaml:"containers" json:"containers"`
	Kinds      []string `yaml:"kinds" json:"kinds"`
}

// ResourceRequirements are Kubernetes requests and limits.
type ResourceRequirements struct {
	Limits   Resources `yaml:"limits" json:"limits"`
	Requests Resources `yaml:"requests" json:"requests"`
}

// Resources are a CPU and a memory quantity.
type Resources struct {
	CPU    string `yaml:"cpu" json:"cpu"`
	Memory string `yaml:"memory" json:"memory"`
}

// RemoteDevelopment is GitLab's workspaces. GitLab itself reads most of it;
// the keys are those of GitLab 16.x to 18.x.
type RemoteDevelopment struct {
	Enabled                               *bool                `yaml:"enabled" json:"enabled"`
	DNSZone                               string               `yaml:"dns_zone" json:"dns_zone"`
	PartialSyncInterval                   Duration             `yaml:"partial_sync_interval" json:"partial_sync_interval"`
	FullSyncInterval                      Duration             `yaml:"full_sync_interval" json:"full_sync_interval"`
	GitLabWorkspacesProxy                 WorkspacesProxy      `yaml:"gitlab_workspaces_proxy" json:"gitlab_workspaces_proxy"`
	NetworkPolicy                         WorkspaceNetwork     `yaml:"network_policy" json:"network_policy"`
	DefaultResourcesPerWorkspaceContainer ResourceRequirements `yaml:"default_resources_per_workspace_container" json:"default_resources_per_workspace_container"`
	MaxResourcesPerWorkspace              ResourceRequirements `yaml:"max_resources_per_workspace" json:"max_resources_per_workspace"`
	WorkspacesQuota                       *int64               `yaml:"workspaces_quota" json:"workspaces_quota"`
	WorkspacesPerUserQuota                *int64               `yaml:"workspaces_per_user_quota" json:"workspaces_per_user_quota"`
	UseKubernetesUserNamespaces           *bool                `yaml:"use_kubernetes_user_namespaces" json:"use_kubernetes_user_namespaces"`
	DefaultRuntimeClass                   string               `yaml:"default_runtime_class" json:"default_runtime_class"`
	AllowPrivilegeEscalation              *bool                `yaml:"allow_privilege_escalation" json:"allow_privilege_escalation"`
	ImagePullSecrets                      []NamespacedName     `yaml:"image_pull_secrets" json:"image_pull_secrets"`
	Annotations                           map[string]string    `yaml:"annotations" json:"annotations"`
	Labels                                map[string]string    `yaml:"labels" json:"labels"`
	MaxActiveHoursBeforeStop              *int64               `yaml:"max_active_hours_before_stop" json:"max_active_hours_before_stop"`
	MaxStoppedHoursBeforeTermination      *int64               `yaml:"max_stopped_hours_before_termination" json:"max_stopped_hours_before_termination"`
	SharedNamespace                       string               `yaml:"shared_namespace" json:"shared_namespace"`
}

// WorkspacesProxy is where gitlab-workspaces-proxy runs.
type WorkspacesProxy struct {
	Namespace string `yaml:"namespace" json:"namespace"`
}

// WorkspaceNetwork is the workspaces' network policy.
type WorkspaceNetwork struct {
	Enabled *bool             `yaml:"enabled" json:"enabled"`
	Egress  []WorkspaceEgress `yaml:"egress" json:"egress"`
}

// WorkspaceEgress allows a CIDR, except some.
type WorkspaceEgress struct {
	Allow  string   `yaml:"allow" json:"allow"`
	Except []string `yaml:"except" json:"except"`
}

// NamespacedName names a Kubernetes object.
type NamespacedName struct {
	Name      string `yaml:"name" json:"name"`
	Namespace string `yaml:"namespace" json:"namespace"`
}

// Flux is GitLab's Flux integration.
type Flux struct {
	WebhookReceiverURL string `yaml:"webhook_receiver_url" json:"webhook_receiver_url"`
}

// Cilium is the cilium section of GitLab 14.x.
type Cilium struct {
	HubbleRelayAddress string `yaml:"hubble_relay_address" json:"hubble_relay_address"`
}

// GoogleProfiler is observability.google_profiler.
type GoogleProfiler struct {
	Enabled         *bool  `yaml:"enabled" json:"enabled"`
	ProjectID       string `yaml:"project_id" json:"project_id"`
	CredentialsFile string `yaml:"credentials_file" json:"credentials_file"`
	DebugLogging    *bool  `yaml:"debug_logging" json:"debug_logging"`
}

// Chart is gitops.charts, GitLab 15.8 to 16.2's experimental Helm support.
type Chart struct {
	ReleaseName string        `yaml:"release_name" json:"release_name"`
	Source      ChartSource   `yaml:"source" json:"source"`
	Values      []ChartValues `yaml:"values" json:"values"`
	Namespace   string        `yaml:"namespace" json:"namespace"`
	MaxHistory  *int64        `yaml:"max_history" json:"max_history"`
}

// ChartSource is where a chart comes from.
type ChartSource struct {
	Project ChartProject `yaml:"project" json:"project"`
}

// ChartProject is a chart in a project's repository.
type ChartProject struct {
	ID   string `yaml:"id" json:"id"`
	Path string `yaml:"path" json:"path"`
	Ref  Ref    `yaml:"ref" json:"ref"`
}

// ChartValues is one source of chart values.
type ChartValues struct {
	// Inline is any YAML mapping.
	Inline any             `yaml:"inline" json:"inline"`
	File   ChartValuesFile `yaml:"file" json:"file"`
	URL    ChartValuesURL  `yaml:"url" json:"url"`
}

// ChartValuesFile is a values file in a project.
type ChartValuesFile struct {
	ProjectID string `yaml:"project_id" json:"project_id"`
	Ref       Ref    `yaml:"ref" json:"ref"`
	File      string `yaml:"file" json:"file"`
}

// ChartValuesURL is values fetched from a URL.
type ChartValuesURL struct {
	URL         string   `yaml:"url" json:"url"`
	PollPeriod  Duration `yaml:"poll_period" json:"poll_period"`
	MaxFileSize *int64   `yaml:"max_file_size" json:"max_file_size"`
}

// IgnoredWarning is the one warning about the keys in Ignored, or "" when
// there are none.
func (c *Config) IgnoredWarning() string {
	if len(c.Ignored) == 0 {
		return ""
	}
	return fmt.Sprintf("config.yaml sets keys of GitLab's agent that this agent does not implement; they have no effect: %s (see docs/compatibility.md)",
		strings.Join(c.Ignored, ", "))
}

func joinKeys(keys []string) string { return strings.Join(keys, ", ") }
