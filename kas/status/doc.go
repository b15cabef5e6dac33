// Package status is what kas knows of each agent and shows: the Store of
// config commits, manifest commits sent and sync reports (with the
// kas_gitops_sync_status metrics), and the Handler that serves the status
// page (GET /, its sign-in) and the status API (GET /api/v1/status,
// /api/v1/agents, /api/v1/agents/{name}) on the observability listener.
//
//	store := status.NewStore(registry)        // gitops.StatusRecorder; StreamInterceptor on the agents' gRPC server
//	status.New(status.Config{Store: store, Agents: ..., Sessions: ...}).Routes(mux)
//
// The Handler sees kas through Config: the agent registry, this replica's
// sessions, the Redis registry of replicas, and how to authenticate a
// users[] token or (with gitlab:) a GitLab personal access token. Who
// sees what: a nil viewer (public page, API without a token) sees every
// agent; a user sees the agents users[].agents names, a GitLab user the
// agents GitLab lets them reach.
package status
