// Package notifications is GitLab's Notifications service
// (gitlab.agent.notifications.rpc): GitLab tells kas about pushes.
package notifications
