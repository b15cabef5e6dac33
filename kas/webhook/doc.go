// Package webhook serves kas's git push webhook (POST
// /api/v1/webhooks/git on the observability listener): a GitLab or GitHub
// push event, authenticated by a shared secret, makes kas fetch every
// repository it names at once instead of at the next poll.
//
//	h, err := webhook.New(webhook.Config{SecretFile: ..., Repositories: ..., Trigger: ...})
//	mux.Handle("/api/v1/webhooks/git", h)
//
// The handler knows repositories only through Config.Repositories and
// fetches only through Config.Trigger, so it does not depend on how kas
// mirrors them.
package webhook
