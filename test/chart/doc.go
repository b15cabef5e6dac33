// Package chart tests the Helm charts in chart/ and the plain manifest in
// deploy/: it renders the charts with the Helm SDK for several value sets,
// applies the results with server-side dry-run to a real kube-apiserver
// (internal/testutil/controlplane), checks the rendered agentk arguments
// against the flags the agentk binary accepts and the rendered kas config
// against kas.ParseConfig, and keeps deploy/agentk.yaml in step with the
// chart:
//
//	make deploy-manifest
package chart
