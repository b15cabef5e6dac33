package kas

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"kubetunnel/gitops/gitrepo"
	"kubetunnel/gitops/manifests"
	"kubetunnel/internal/yamlconf"
	"kubetunnel/kasproxy"
)

// Defaults, in one place.
const (
	DefaultAgentListen         = "127.0.0.1:8150"
	DefaultObservabilityListen = "127.0.0.1:8151"
	DefaultKubernetesAPIListen = "127.0.0.1:8154"
	DefaultMaxConnectionAge    = 2 * time.Hour
	DefaultPollPeriod          = 20 * time.Second
	DefaultDrainTimeout        = 30 * time.Second
	DefaultCacheDir            = "kas-cache"
	// Several replicas (redis, private_api).
	DefaultPrivateAPIListen   = "127.0.0.1:8155"
	DefaultPeerDialTimeout    = 2 * time.Second
	DefaultRedisKeyPrefix     = "kas"
	DefaultRedisDialTimeout   = 5 * time.Second
	DefaultRedisTimeout       = 2 * time.Second
	DefaultRedisAgentTTL      = time.Minute
	DefaultRedisRefreshPeriod = 20 * time.Second
	// EnvAdvertiseAddress and EnvPodIP give a replica its own private API
	// address when private_api.advertise_address is not set (a Deployment
	// sets POD_IP from the downward API).
	EnvAdvertiseAddress = "KAS_PRIVATE_API_ADVERTISE_ADDRESS"
	EnvPodIP            = "POD_IP"
	// GitOps limits per manifest project commit (agent.gitops.max_…).
	DefaultMaxManifestFileSize      = manifests.DefaultMaxFileSize
	DefaultMaxTotalManifestFileSize = manifests.DefaultMaxTotalSize
	DefaultMaxNumberOfFiles         = manifests.DefaultMaxFiles
	DefaultMaxNumberOfPaths         = manifests.DefaultMaxPaths
	// proxyMaxHeaderBytes bounds a proxied request's headers (431 above).
	proxyMaxHeaderBytes = 1 << 20
)

// Config is the kas config file. Zero values mean "use the default".
type Config struct {
	Agent         AgentSection         `yaml:"agent"`
	Observability ObservabilitySection `yaml:"observability"`
	Repositories  []gitrepo.Repository `yaml:"repositories"`
	Agents        []AgentEntry         `yaml:"agents"`
	Users         []UserEntry          `yaml:"users"`
	Redis         *RedisSection        `yaml:"redis"`
	PrivateAPI    *PrivateAPISection   `yaml:"private_api"`
	Git           GitSection           `yaml:"git"`
	// GitLab backend (config_gitlab.go).
	GitLab *GitLabSection `yaml:"gitlab"`
	API    *APISection    `yaml:"api"`
	// Limits: connection caps, timeouts and per-caller bounds (limits.go).
	Limits LimitsSection `yaml:"limits"`
}

// AgentSection configures the agent-facing side.
type AgentSection struct {
	Listen        AgentListen          `yaml:"listen"`
	Configuration PollSection          `yaml:"configuration"`
	GitOps        GitOpsSection        `yaml:"gitops"`
	KubernetesAPI KubernetesAPISection `yaml:"kubernetes_api"`
	// GitLab backend (config_gitlab.go).
	InfoCacheTTL      time.Duration `yaml:"info_cache_ttl"`
	InfoCacheErrorTTL time.Duration `yaml:"info_cache_error_ttl"`
}

// AgentListen is where agentk connects.
type AgentListen struct {
	Address string `yaml:"address"`
	// Websocket false serves raw TCP (grpc://, grpcs://) instead.
	Websocket        *bool         `yaml:"websocket"`
	CertificateFile  string        `yaml:"certificate_file"`
	KeyFile          string        `yaml:"key_file"`
	MaxConnectionAge time.Duration `yaml:"max_connection_age"`
	// DrainTimeout bounds how long a rotated or shutting-down connection
	// waits for requests in flight before it is closed.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// ListenGracePeriod keeps every listener serving this long after a
	// stop signal, with /readyz failing, before the shutdown starts: a
	// load balancer or Kubernetes Service stops sending new connections
	// in that time instead of having them refused. 0 (the default for a
	// bare process) starts the shutdown at once; the chart sets 5s.
	ListenGracePeriod time.Duration `yaml:"listen_grace_period"`
}

// AgentkAddress is agentk's --kas-address for this listener reached at
// hostport: the scheme follows websocket (default true) and TLS.
func (l AgentListen) AgentkAddress(hostport string) string {
	ws := l.Websocket == nil || *l.Websocket
	switch {
	case ws && l.CertificateFile != "":
		return "wss://" + hostport + "/"
	case ws:
		return "ws://" + hostport + "/"
	case l.CertificateFile != "":
		return "grpcs://" + hostport
	default:
		return "grpc://" + hostport
	}
}

// PollSection holds a poll period.
type PollSection struct {
	PollPeriod time.Duration `yaml:"poll_period"`
}

// GitOpsSection configures manifest delivery to agents
// (GitOps.GetObjectsToSynchronize). Sizes are in bytes.
type GitOpsSection struct {
	PollPeriod time.Duration `yaml:"poll_period"`
	// MaxManifestFileSize bounds one selected file.
	MaxManifestFileSize int64 `yaml:"max_manifest_file_size"`
	// MaxTotalManifestFileSize bounds the selected files of one commit.
	MaxTotalManifestFileSize int64 `yaml:"max_total_manifest_file_size"`
	// MaxNumberOfFiles bounds the selected files of one commit.
	MaxNumberOfFiles int `yaml:"max_number_of_files"`
	// MaxNumberOfPaths bounds a manifest project's paths[].glob.
	MaxNumberOfPaths int `yaml:"max_number_of_paths"`
}

// KubernetesAPISection is the Kubernetes API proxy listener.
type KubernetesAPISection struct {
	Listen Listen `yaml:"listen"`
	// MaxStreamsPerAgent bounds proxied requests in flight per agent
	// (watches and exec sessions count); over it callers get 429.
	MaxStreamsPerAgent int `yaml:"max_streams_per_agent"`
	// URLPathPrefix is where GitLab's callers (CI jobs, users; with
	// gitlab: set) reach the Kubernetes API; the agent is named in their
	// credential. Static users keep /agents/<name>/.
	URLPathPrefix string `yaml:"url_path_prefix"`
}

// Listen is a plain listener with optional TLS.
type Listen struct {
	Address         string `yaml:"address"`
	CertificateFile string `yaml:"certificate_file"`
	KeyFile         string `yaml:"key_file"`
}

// ObservabilitySection serves /metrics, /healthz and /readyz.
type ObservabilitySection struct {
	Listen Listen `yaml:"listen"`
	// UsageReportingPeriod: GitLab backend (config_gitlab.go).
	UsageReportingPeriod time.Duration `yaml:"usage_reporting_period"`
	// Status: the status page (package kas/status).
	Status StatusSection `yaml:"status"`
}

// GitSection configures the local git cache.
type GitSection struct {
	// CacheDir holds bare mirrors of the repositories; relative paths are
	// relative to the working directory.
	CacheDir string `yaml:"cache_dir"`
	// WebhookSecretFile holds the shared secret of push webhooks
	// (POST /api/v1/webhooks/git on the observability listener); empty
	// disables them. The file is read again on every webhook.
	WebhookSecretFile string `yaml:"webhook_secret_file"`
}

// AgentEntry is an agent in the standalone registry.
type AgentEntry struct {
	Name          string   `yaml:"name"`
	ConfigProject string   `yaml:"config_project"`
	TokenSHA256   []string `yaml:"token_sha256"`
	// Projects are the repositories[].id this agent may read besides its
	// config project (always readable). Not set or []: only the config
	// project, so a token cannot read repositories its agent was not given.
	Projects []string `yaml:"projects"`
}

// UserEntry is a caller of the Kubernetes API proxy.
type UserEntry struct {
	Name        string   `yaml:"name"`
	TokenSHA256 []string `yaml:"token_sha256"`
	Groups      []string `yaml:"groups"`
	Agents      []string `yaml:"agents"`
}

// RedisSection is the agent registry shared by several kas replicas
// (which replica holds which agent). It needs private_api too.
type RedisSection struct {
	// Address is host:port of the Redis server.
	Address  string `yaml:"address"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (ACL user or requirepass).
	PasswordFile  string   `yaml:"password_file"`
	DatabaseIndex int      `yaml:"database_index"`
	TLS           RedisTLS `yaml:"tls"`
	// KeyPrefix starts every key kas writes, so kas installations can
	// share a Redis.
	KeyPrefix   string        `yaml:"key_prefix"`
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Timeout bounds each read and write.
	Timeout time.Duration `yaml:"timeout"`
	// AgentTTL is how long an entry lives when its replica stops
	// refreshing it (a replica killed without cleaning up).
	AgentTTL time.Duration `yaml:"agent_ttl"`
	// RefreshPeriod is how often a replica rewrites its entries; a Redis
	// that lost its data is complete again within one period.
	RefreshPeriod time.Duration `yaml:"refresh_period"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	Enabled bool `yaml:"enabled"`
	// CACertificateFile verifies the server (system roots when empty).
	CACertificateFile string `yaml:"ca_certificate_file"`
	// CertificateFile and KeyFile are a client certificate, if Redis
	// asks for one.
	CertificateFile string `yaml:"certificate_file"`
	KeyFile         string `yaml:"key_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name"`
}

// PrivateAPISection is the kas-to-kas listener: a replica forwards a
// proxied request there when the agent is connected to that replica.
type PrivateAPISection struct {
	Listen Listen `yaml:"listen"`
	// AuthenticationSecretFile holds the secret (at least 32 bytes) that
	// every replica shares to sign and check private API tokens.
	AuthenticationSecretFile string `yaml:"authentication_secret_file"`
	// AdvertiseAddress is host:port where peers reach this replica's
	// listener. Default: $KAS_PRIVATE_API_ADVERTISE_ADDRESS, else
	// $POD_IP with the listen port, else the listen address.
	AdvertiseAddress string `yaml:"advertise_address"`
	// CACertificateFile verifies peers' certificates when the listener
	// has TLS (system roots when empty).
	CACertificateFile string `yaml:"ca_certificate_file"`
	// ServerName is the name checked in peers' certificates (default: the
	// host of their advertised address).
	ServerName  string        `yaml:"server_name"`
	DialTimeout time.Duration `yaml:"dial_timeout"`
}

// LoadConfig reads, defaults and validates a config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading kas config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses a config document strictly: an unknown key, a
// duplicate key or a value of the wrong kind is an error that names its
// line and key path (and, for a key, the known ones). Validate's errors
// that are *yamlconf.Error get the line of their key too.
func ParseConfig(data []byte) (*Config, error) {
	cfg := &Config{}
	res, err := yamlconf.Decode(data, cfg, yamlconf.Options{})
	if err != nil {
		return nil, err
	}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, res.Locate(err)
	}
	return cfg, nil
}

// Default fills in defaults for zero values.
func (c *Config) Default() {
	l := &c.Agent.Listen
	if l.Address == "" {
		l.Address = DefaultAgentListen
	}
	if l.Websocket == nil {
		t := true
		l.Websocket = &t
	}
	if l.MaxConnectionAge == 0 {
		l.MaxConnectionAge = DefaultMaxConnectionAge
	}
	if l.DrainTimeout == 0 {
		l.DrainTimeout = DefaultDrainTimeout
	}
	if c.Agent.Configuration.PollPeriod == 0 {
		c.Agent.Configuration.PollPeriod = DefaultPollPeriod
	}
	if c.Agent.GitOps.PollPeriod == 0 {
		c.Agent.GitOps.PollPeriod = DefaultPollPeriod
	}
	g := &c.Agent.GitOps
	if g.MaxManifestFileSize == 0 {
		g.MaxManifestFileSize = DefaultMaxManifestFileSize
	}
	if g.MaxTotalManifestFileSize == 0 {
		g.MaxTotalManifestFileSize = DefaultMaxTotalManifestFileSize
	}
	if g.MaxNumberOfFiles == 0 {
		g.MaxNumberOfFiles = DefaultMaxNumberOfFiles
	}
	if g.MaxNumberOfPaths == 0 {
		g.MaxNumberOfPaths = DefaultMaxNumberOfPaths
	}
	if c.Agent.KubernetesAPI.Listen.Address == "" {
		c.Agent.KubernetesAPI.Listen.Address = DefaultKubernetesAPIListen
	}
	if c.Agent.KubernetesAPI.MaxStreamsPerAgent == 0 {
		c.Agent.KubernetesAPI.MaxStreamsPerAgent = kasproxy.DefaultMaxStreamsPerAgent
	}
	if c.Agent.KubernetesAPI.URLPathPrefix == "" {
		c.Agent.KubernetesAPI.URLPathPrefix = "/"
	}
	if c.Observability.Listen.Address == "" {
		c.Observability.Listen.Address = DefaultObservabilityListen
	}
	if c.Git.CacheDir == "" {
		c.Git.CacheDir = DefaultCacheDir
	}
	c.defaultGitLab()
	c.Limits.defaults()
	if r := c.Redis; r != nil {
		if r.KeyPrefix == "" {
			r.KeyPrefix = DefaultRedisKeyPrefix
		}
		if r.DialTimeout == 0 {
			r.DialTimeout = DefaultRedisDialTimeout
		}
		if r.Timeout == 0 {
			r.Timeout = DefaultRedisTimeout
		}
		if r.AgentTTL == 0 {
			r.AgentTTL = DefaultRedisAgentTTL
		}
		if r.RefreshPeriod == 0 {
			r.RefreshPeriod = DefaultRedisRefreshPeriod
		}
	}
	if p := c.PrivateAPI; p != nil {
		if p.Listen.Address == "" {
			p.Listen.Address = DefaultPrivateAPIListen
		}
		if p.DialTimeout == 0 {
			p.DialTimeout = DefaultPeerDialTimeout
		}
	}
}

// Validate checks every section and names the first bad key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, yamlconf.KeyError(key, format, args...))
	}
	checkListen := func(key string, l Listen) {
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			bad(key+".address", "%q is not host:port", l.Address)
		}
		if (l.CertificateFile == "") != (l.KeyFile == "") {
			bad(key, "certificate_file and key_file must be set together")
		}
	}
	al := c.Agent.Listen
	checkListen("agent.listen", Listen{Address: al.Address, CertificateFile: al.CertificateFile, KeyFile: al.KeyFile})
	if al.MaxConnectionAge < 0 {
		bad("agent.listen.max_connection_age", "must not be negative")
	}
	if al.DrainTimeout < 0 {
		bad("agent.listen.drain_timeout", "must not be negative")
	}
	if al.ListenGracePeriod < 0 {
		bad("agent.listen.listen_grace_period", "must not be negative")
	}
	checkListen("agent.kubernetes_api.listen", c.Agent.KubernetesAPI.Listen)
	if c.Agent.KubernetesAPI.MaxStreamsPerAgent < 0 {
		bad("agent.kubernetes_api.max_streams_per_agent", "must be positive")
	}
	if p := c.Agent.KubernetesAPI.URLPathPrefix; !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "/agents/") || strings.ContainsAny(p, "?#%") {
		bad("agent.kubernetes_api.url_path_prefix", "%q: expected a path starting with / (not under /agents/)", p)
	}
	checkListen("observability.listen", c.Observability.Listen)
	if c.Agent.Configuration.PollPeriod < 0 {
		bad("agent.configuration.poll_period", "must be positive")
	}
	if c.Agent.GitOps.PollPeriod < 0 {
		bad("agent.gitops.poll_period", "must be positive")
	}
	g := c.Agent.GitOps
	switch {
	case g.MaxManifestFileSize < 0:
		bad("agent.gitops.max_manifest_file_size", "must be positive")
	case g.MaxManifestFileSize > gitrepo.MaxFileSize:
		bad("agent.gitops.max_manifest_file_size", "%d is over %d bytes, the largest file kas reads from git", g.MaxManifestFileSize, gitrepo.MaxFileSize)
	}
	if g.MaxTotalManifestFileSize < 0 {
		bad("agent.gitops.max_total_manifest_file_size", "must be positive")
	}
	if g.MaxNumberOfFiles < 0 {
		bad("agent.gitops.max_number_of_files", "must be positive")
	}
	if g.MaxNumberOfPaths < 0 {
		bad("agent.gitops.max_number_of_paths", "must be positive")
	}
	if err := gitrepo.ValidateRepositories(c.Repositories); err != nil {
		errs = append(errs, err)
	}
	repos := map[string]bool{}
	for _, r := range c.Repositories {
		repos[r.ID] = true
	}
	agents := map[string]bool{}
	for i, a := range c.Agents {
		key := fmt.Sprintf("agents[%d]", i)
		switch {
		case a.Name == "":
			bad(key+".name", "missing")
		case agents[a.Name]:
			bad(key+".name", "agent %q is declared twice", a.Name)
		case strings.ContainsAny(a.Name, "/ \t"):
			bad(key+".name", "%q must not contain slashes or spaces", a.Name)
		}
		agents[a.Name] = true
		if a.ConfigProject != "" && !repos[a.ConfigProject] {
			bad(key+".config_project", "%q is not a repositories[].id", a.ConfigProject)
		}
		checkHashes(key+".token_sha256", a.TokenSHA256, bad)
		for j, p := range a.Projects {
			if !repos[p] {
				bad(fmt.Sprintf("%s.projects[%d]", key, j), "%q is not a repositories[].id", p)
			}
		}
	}
	users := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		if u.Name == "" {
			bad(key+".name", "missing")
		} else if users[u.Name] {
			bad(key+".name", "user %q is declared twice", u.Name)
		}
		users[u.Name] = true
		checkHashes(key+".token_sha256", u.TokenSHA256, bad)
		for j, a := range u.Agents {
			if c.GitLab == nil && !agents[a] { // with gitlab:, agent ids (validateGitLab)
				bad(fmt.Sprintf("%s.agents[%d]", key, j), "%q is not an agents[].name", a)
			}
		}
	}
	c.validateReplicas(bad, checkListen)
	c.validateGitLab(bad, checkListen)
	c.Limits.validate(bad)
	c.validateIdentities(bad)
	return errors.Join(errs...)
}

func checkHashes(key string, hashes []string, bad func(key, format string, args ...any)) {
	for j, h := range hashes {
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 || strings.ToLower(h) != h {
			bad(fmt.Sprintf("%s[%d]", key, j), "must be a lowercase hex SHA-256 (64 characters), e.g. from: printf %%s \"$TOKEN\" | sha256sum")
		}
	}
}

func (c *Config) validateReplicas(bad func(key, format string, args ...any), checkListen func(string, Listen)) {
	r, p := c.Redis, c.PrivateAPI
	switch {
	case r == nil && p == nil:
		return
	case r == nil:
		bad("redis", "missing: private_api is for several kas replicas, which find each other's agents in Redis")
		return
	case p == nil:
		bad("private_api", "missing: with redis (several kas replicas), each replica needs a private_api listener for the others")
		return
	}
	if _, _, err := net.SplitHostPort(r.Address); err != nil {
		bad("redis.address", "%q is not host:port", r.Address)
	}
	if r.DatabaseIndex < 0 {
		bad("redis.database_index", "must not be negative")
	}
	if (r.TLS.CertificateFile == "") != (r.TLS.KeyFile == "") {
		bad("redis.tls", "certificate_file and key_file must be set together")
	}
	if !r.TLS.Enabled && (r.TLS.CACertificateFile != "" || r.TLS.CertificateFile != "" || r.TLS.ServerName != "") {
		bad("redis.tls.enabled", "TLS files are set but enabled is false")
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"redis.dial_timeout", r.DialTimeout}, {"redis.timeout", r.Timeout}, {"redis.agent_ttl", r.AgentTTL}, {"redis.refresh_period", r.RefreshPeriod}} {
		if d.d < 0 {
			bad(d.key, "must be positive")
		}
	}
	if r.RefreshPeriod >= r.AgentTTL {
		bad("redis.refresh_period", "%v must be shorter than redis.agent_ttl (%v), or entries expire between refreshes", r.RefreshPeriod, r.AgentTTL)
	}
	checkListen("private_api.listen", p.Listen)
	if p.AuthenticationSecretFile == "" {
		bad("private_api.authentication_secret_file", "missing: every replica needs the same secret file (at least 32 bytes) to authenticate the others")
	}
	if p.AdvertiseAddress != "" {
		if _, _, err := net.SplitHostPort(p.AdvertiseAddress); err != nil {
			bad("private_api.advertise_address", "%q is not host:port", p.AdvertiseAddress)
		}
	}
	if p.DialTimeout < 0 {
		bad("private_api.dial_timeout", "must be positive")
	}
}
