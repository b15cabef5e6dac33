// Package agentcfg is the schema of the agent's config.yaml
// (.gitlab/agents/<agent-name>/config.yaml in the agent's config project),
// with the keys of the GitLab agent so existing files keep working.
//
// kas reads the file with Parse (on internal/yamlconf, the strict decoder of
// every config file), which rejects unknown keys and values of the
// wrong shape with the line and key path, fills the defaults and validates.
// Every key of GitLab's own schema is known: the sections this agent does
// not implement (ignored.go, and ci_access in access.go) are checked the
// same way and listed in Config.Ignored, for one warning instead of an
// error. kas sends the result to agentk as JSON (ToJSON); agentk reads it
// with FromJSON. Defaults live in defaults.go and nowhere else.
package agentcfg
