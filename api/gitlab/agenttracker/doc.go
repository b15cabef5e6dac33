// Package agenttracker holds ConnectedAgentInfo
// (gitlab.agent.agent_tracker), wire-compatible with GitLab's.
package agenttracker
