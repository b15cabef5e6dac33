package kas

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"kubetunnel/internal/gitlab"
)

// GitLab backend defaults.
const (
	DefaultInfoCacheTTL         = gitlab.DefaultInfoCacheTTL
	DefaultInfoCacheErrorTTL    = gitlab.DefaultInfoCacheErrorTTL
	DefaultUsageReportingPeriod = time.Minute
	DefaultAPIListen            = "127.0.0.1:8153"
)

// GitLabSection makes GitLab the agent registry: agents, their tokens,
// config projects and manifest project access come from GitLab's
// internal API instead of agents[].
type GitLabSection struct {
	// Address is GitLab's base URL for the internal API and HTTPS git
	// (https://gitlab.example.com). http:// only to a loopback address,
	// unless allow_insecure_http is set.
	Address string `yaml:"address"`
	// ExternalURL is GitLab's URL as browsers see it (CORS origin).
	ExternalURL string `yaml:"external_url"`
	// AuthenticationSecretFile is GitLab's .gitlab_kas_secret: base64 of
	// the key that signs kas's JWTs to GitLab.
	AuthenticationSecretFile string `yaml:"authentication_secret_file"`
	// CACertificateFile holds PEM certificates to trust for GitLab, in
	// addition to the system's.
	CACertificateFile string `yaml:"ca_certificate_file"`
	// AllowInsecureHTTP allows an http:// address that is not loopback:
	// agent tokens and the git credential then cross the network in clear.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// Git is the credential kas fetches projects with over HTTPS git.
	Git GitLabGit `yaml:"git"`
}

// GitLabGit is an HTTPS git credential: a GitLab deploy token or a bot
// user's token with read_repository.
type GitLabGit struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// APISection is the listener GitLab calls (gRPC: agent tracker,
// notifications), authenticated with GitLab's JWT.
type APISection struct {
	Listen APIListen `yaml:"listen"`
}

// APIListen is the api listener.
type APIListen struct {
	Address         string `yaml:"address"`
	CertificateFile string `yaml:"certificate_file"`
	KeyFile         string `yaml:"key_file"`
	// AuthenticationSecretFile holds the base64 key GitLab signs its JWTs
	// with (GitLab's .gitlab_kas_secret).
	AuthenticationSecretFile string `yaml:"authentication_secret_file"`
}

func (c *Config) defaultGitLab() {
	if c.Agent.InfoCacheTTL == 0 {
		c.Agent.InfoCacheTTL = DefaultInfoCacheTTL
	}
	if c.Agent.InfoCacheErrorTTL == 0 {
		c.Agent.InfoCacheErrorTTL = DefaultInfoCacheErrorTTL
	}
	if c.Observability.UsageReportingPeriod == 0 {
		c.Observability.UsageReportingPeriod = DefaultUsageReportingPeriod
	}
	if c.API != nil && c.API.Listen.Address == "" {
		c.API.Listen.Address = DefaultAPIListen
	}
}

func (c *Config) validateGitLab(bad func(key, format string, args ...any), checkListen func(string, Listen)) {
	if c.Agent.InfoCacheTTL < 0 {
		bad("agent.info_cache_ttl", "must be positive")
	}
	if c.Agent.InfoCacheErrorTTL < 0 {
		bad("agent.info_cache_error_ttl", "must be positive")
	}
	if c.Observability.UsageReportingPeriod < 0 {
		bad("observability.usage_reporting_period", "must be positive")
	}
	if a := c.API; a != nil {
		checkListen("api.listen", Listen{Address: a.Listen.Address, CertificateFile: a.Listen.CertificateFile, KeyFile: a.Listen.KeyFile})
		if a.Listen.AuthenticationSecretFile == "" {
			bad("api.listen.authentication_secret_file", "missing: GitLab's calls are checked with its JWT (the .gitlab_kas_secret file)")
		}
		if c.GitLab == nil {
			bad("api", "needs gitlab: the api listener serves GitLab")
		}
	}
	g := c.GitLab
	if g == nil {
		return
	}
	if len(c.Agents) > 0 {
		bad("agents", "must be empty with gitlab: agents, tokens and config projects come from GitLab")
	}
	for i, u := range c.Users {
		for j, a := range u.Agents {
			if n, err := strconv.ParseInt(a, 10, 64); err != nil || n <= 0 {
				bad(fmt.Sprintf("users[%d].agents[%d]", i, j), "%q: with gitlab:, name agents by their GitLab agent id (a number)", a)
			}
		}
	}
	switch u, err := url.Parse(g.Address); {
	case g.Address == "":
		bad("gitlab.address", "missing: GitLab's URL, e.g. https://gitlab.example.com")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		bad("gitlab.address", "%q is not an http(s) URL", g.Address)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		bad("gitlab.address", "%q: no user, query or fragment (credentials go in gitlab.git)", g.Address)
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()) && !g.AllowInsecureHTTP:
		bad("gitlab.address", "%q sends agent tokens and the git credential in clear: use https://, or set gitlab.allow_insecure_http", g.Address)
	case u.Scheme == "http" && g.Git.PasswordFile != "":
		bad("gitlab.git", "kas sends git credentials only over https://, and gitlab.address is %q", g.Address)
	}
	if g.ExternalURL != "" {
		if u, err := url.Parse(g.ExternalURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			bad("gitlab.external_url", "%q is not an http(s) URL", g.ExternalURL)
		}
	}
	if g.AuthenticationSecretFile == "" {
		bad("gitlab.authentication_secret_file", "missing: the file holding GitLab's .gitlab_kas_secret")
	}
	if (g.Git.Username == "") != (g.Git.PasswordFile == "") {
		bad("gitlab.git", "username and password_file must be set together")
	}
}

// isLoopbackHost reports whether host is a loopback IP or localhost.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
