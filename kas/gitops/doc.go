// Package gitops delivers to agents what kas reads from git: each agent's
// config.yaml (the Configuration service) and the manifests of its
// manifest projects (the GitOps service), over the gRPC server that
// agents reach through their tunnel, and records their sync reports.
//
//	srv := gitops.New(gitops.Config{Repositories: repos, Access: access, Status: store, ...})
//	srv.Register(grpcServer)
//
// It knows kas only through Config: the repositories (Repositories: kas's
// mirrors), who may read what (Access), where reports go
// (StatusRecorder) and, with gitlab:, how to open a GitLab project's
// mirror and tell GitLab a new config (OpenConfigProject, ConfigPoster).
// The calling agent comes from the gRPC peer (identity.FromContext).
//
// The wire contract of GetObjectsToSynchronize (sets, chunking, limits,
// refusals) is the doc comment of Server in gitops.go.
package gitops
