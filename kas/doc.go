// Package kas is the agent server: it accepts agentk connections through
// the tunnel, authenticates agents against its registry, delivers each
// agent's configuration and manifests from git and keeps the live
// sessions that the Kubernetes API proxy sends requests through.
//
// New wires a Server from a validated Config; Run serves until its
// context ends and then stops in stages (server.go). Package kas keeps
// the registry and the configuration; each other
// concern is a package of its own, built with New(Config) from narrow
// interfaces rather than the Server:
//
//	kas (this package)
//	  config.go, config_gitlab.go, identities.go
//	                                 the kas config: defaults, Validate, LoadConfig
//	  server.go                      New and Run: listeners, stages, the agent tunnel
//	  sessions.go                    kas/sessions under the names kas exports (DrainConfig)
//	  limits.go, admission.go        limits: the listeners' and agents' caps; handshakes
//	                                 counted against max_connections_per_agent
//	  reload.go                      live reload of the config file (SIGHUP, polling)
//	  inspect.go                     what a test reads that no API shows (protocols)
//	  registry.go, registry_gitlab.go, revalidate.go
//	                                 AgentRegistry: agents[] or GitLab's agent_info
//	  peers.go                       several replicas: Redis, the private API
//	  repos.go                       kas/repos as a reload changes repositories[]
//	  access.go                      which agent may read which manifest project
//	  grpc.go                        the agents' gRPC server over tunnel streams
//	  observability.go, buildinfo.go /metrics, /healthz, /readyz, kas_build_info
//	  gitlab_access.go               GitLab's callers (CI jobs, users) on the proxy
//	  kubeconfig.go                  kas kubeconfig
//	  delivery.go, gitlab_api.go, statusapi.go
//	                                 wiring of the packages below
//	kas/identity   the Agent type shared by all of kas; the calling agent of a gRPC handler
//	kas/sessions   the live agent sessions: the request path to agents (Pick, RoundTripper),
//	               each session's lifecycle (rotation, revocation, drain), agent-opened streams
//	kas/gitops     the agents' Configuration and GitOps services: config.yaml and manifests
//	kas/repos      the repositories kas mirrors (repositories[], GitLab projects), polled,
//	               and their poll metrics
//	kas/status     what kas knows of each agent; the status page and API
//	kas/webhook    the git push webhook (GitLab and GitHub)
//	kas/tracker    GitLab's AgentTracker and Notifications on the api listener
//	kas/usage      usage counters reported to GitLab
//	kas/check      kas check: TLS pairs, repositories, agents' config.yaml, GitLab,
//	               Redis and the private API, security warnings (imports kas; kas does not import it)
//	kas/replicas   the Redis registry of replicas and forwarding between them
//	kas/internal/apijson
//	               the JSON answers of the observability listener's APIs
//
// kasproxy (the Kubernetes API proxy) and tunnel (the agent connection)
// are shared with the rest of the module; kas never imports agentk.
package kas
