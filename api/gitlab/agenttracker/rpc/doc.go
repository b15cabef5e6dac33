// Package rpc is GitLab's AgentTracker service
// (gitlab.agent.agent_tracker.rpc), which kas serves on its api listener
// so GitLab can list connected agents.
package rpc
