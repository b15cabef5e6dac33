// Package check is `kas check`: Run verifies a loaded kas config the way
// kas would use it, without serving, and writes one verdict line per item.
//
//	check.go      Run: listeners' TLS pairs, repositories, agents' config.yaml
//	gitops.go     manifest globs that select no file (with the directory they
//	              probably meant), an agent directory misspelt in the config project
//	gitlab.go     gitlab: and api: (GitLab answers and accepts kas's JWT)
//	replicas.go   redis: and private_api: (secret, advertised address, PING)
//	security.go   WARN lines for what production should not allow
//
// It imports kas for the config and for what kas builds from it (the GitLab
// client, the Redis options, the advertised URL), so it checks exactly what
// kas would use; kas does not import check.
package check
