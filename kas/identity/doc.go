// Package identity is who an agent is inside kas: the Agent the registry
// authenticated (key, name, GitLab ids, the repositories it may read),
// and how a gRPC handler learns which agent is calling (FromContext).
//
// It is the one type kas's packages share about agents, so that the
// GitOps, configuration and status packages need neither the registry
// nor the server.
package identity
