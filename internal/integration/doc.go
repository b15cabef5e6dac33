// Package integration holds the cross-binary tests: kas and agentk, the
// real code of both, in one test process, against a stand-in API server
// behind agentk (and, for several replicas, a real redis-server). They
// check what neither binary's own tests can: that kas and agentk agree
// on the tunnel, the proxy, config delivery, limits, reloads, faults on
// the link between them, and several replicas of either.
//
// The package has no code of its own, only tests, and no other package
// imports it; it exists so that kas's tests need no agentk and agentk's
// none of kas (test/deps checks the binaries never link each other).
//
// It lives in the product module, not in the tests' module (test/), for
// three reasons: the tests build kas and agentk with exactly the module
// graph the binaries ship with (the tests' module adds Kubernetes,
// Helm and others, which can move shared dependencies); they need no
// dependency the product module lacks; and `go test ./...` in the root,
// the edit-test loop, keeps running them. End-to-end tests against a
// real API server and separate kas/agentk processes stay in test/e2e.
//
// Helpers: harness_test.go (env: one kas from kascluster.Run, an agentk
// per startAgent, the proxy and status calls), fakeapi_test.go (the
// stand-in API server), replicas_integration_test.go (haEnv: replicas
// from kascluster.Start sharing Redis). Every test ends with goleak
// (main_test.go).
package integration
