// Package tracker serves what kas offers GitLab on the api listener
// (api: in the kas config, with gitlab:): GitLab's AgentTracker (which
// agentk connections each agent and config project has, across replicas
// through Redis) and Notifications (a push to a project kas mirrors
// fetches it at once), behind GitLab's JWT.
//
//	t := tracker.New(tracker.Config{Redis: client, KeyPrefix: "kas", TTL: ..., Refresh: ..., Timeout: ...})
//	defer t.Register(tracker.ConnectionInfo(agent, hello, connectedAt))() // per agentk connection
//	srv, err := tracker.NewAPIServer(tracker.APIConfig{SecretFile: ..., Tracker: t, Trigger: repos.Trigger})
//	err = tracker.ServeAPI(ctx, srv, listener)
package tracker
