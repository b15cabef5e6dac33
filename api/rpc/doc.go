// Package rpc holds the gRPC services that kas serves to agentk over the
// tunnel: Configuration (the agent's config.yaml) and GitOps (manifests and
// sync reports). rpc.proto is the contract; the *.pb.go files are generated
// from it by hack/genproto.sh and committed.
package rpc

//go:generate ../../hack/genproto.sh
