package check

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"kubetunnel/kas"
)

// minWebhookSecretBytes: a shorter git.webhook_secret_file is a warning
// (the GitLab token is compared as is; guessing it is a matter of tries).
const minWebhookSecretBytes = 16

// securityWarnings lists what a config allows that production should not:
// plain-text listeners reachable off this host, an unauthenticated
// observability listener off loopback, a short webhook secret, Redis and
// the private API without TLS or authentication, users in system: groups.
// kas runs with them; kas check prints them.
func securityWarnings(c *kas.Config) []string {
	var w []string
	offLoopback := func(addr string) bool {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return true
		}
		if host == "localhost" {
			return false
		}
		ip := net.ParseIP(host)
		return ip == nil || !ip.IsLoopback()
	}
	if l := c.Agent.Listen; l.CertificateFile == "" && offLoopback(l.Address) {
		w = append(w, fmt.Sprintf("agent.listen %s: plain text off loopback: agent tokens cross the network in clear; set certificate_file/key_file or terminate TLS in front", l.Address))
	}
	if l := c.Agent.KubernetesAPI.Listen; l.CertificateFile == "" && offLoopback(l.Address) {
		w = append(w, fmt.Sprintf("agent.kubernetes_api.listen %s: plain text off loopback: user tokens cross the network in clear; set certificate_file/key_file or terminate TLS in front", l.Address))
	}
	if l := c.Observability.Listen; offLoopback(l.Address) {
		w = append(w, fmt.Sprintf("observability.listen %s: off loopback: metrics and the status API have no authentication; keep the address private (the chart's ClusterIP Service)", l.Address))
	}
	if f := c.Git.WebhookSecretFile; f != "" {
		if b, err := os.ReadFile(f); err == nil && len(bytes.TrimSpace(b)) < minWebhookSecretBytes {
			w = append(w, fmt.Sprintf("git.webhook_secret_file: %d bytes; use at least %d random bytes (e.g. head -c 32 /dev/urandom | base64)", len(bytes.TrimSpace(b)), minWebhookSecretBytes))
		}
	}
	if r := c.Redis; r != nil {
		if !r.TLS.Enabled {
			w = append(w, "redis.tls.enabled is false: whoever can reach Redis on the path can read and rewrite where requests are forwarded; use TLS")
		}
		if r.PasswordFile == "" {
			w = append(w, "redis.password_file is not set: a Redis anyone can write to can send proxied requests (and their bodies) to any URL; use a password (ACL user)")
		}
	}
	if p := c.PrivateAPI; p != nil && p.Listen.CertificateFile == "" {
		w = append(w, fmt.Sprintf("private_api.listen %s: plain text between replicas: requests, bodies and their private API tokens cross the network in clear; set certificate_file/key_file and ca_certificate_file", p.Listen.Address))
	}
	if limit := openFilesLimit(); limit > 0 {
		l := c.Limits
		sum := l.AgentListen.MaxConnections + l.KubernetesAPIListen.MaxConnections + l.ObservabilityListen.MaxConnections
		if c.PrivateAPI != nil {
			sum += l.PrivateAPIListen.MaxConnections
		}
		if uint64(sum) >= limit {
			w = append(w, fmt.Sprintf("limits.*_listen.max_connections add up to %d, not below this process's open-files limit (%d): a flood on one listener can starve the others; lower them or raise the limit (ulimit -n)", sum, limit))
		}
	}
	for i, u := range c.Users {
		for _, g := range u.Groups {
			if strings.HasPrefix(strings.ToLower(g), "system:") {
				w = append(w, fmt.Sprintf("users[%d].groups: %q is a Kubernetes system group (system:masters is cluster-admin); with access_as user, agentk impersonates it", i, g))
			}
		}
	}
	return w
}

// checkSecurity writes securityWarnings as WARN lines (they do not fail
// the check).
func checkSecurity(c *kas.Config, out io.Writer) {
	for _, s := range securityWarnings(c) {
		fmt.Fprintf(out, "WARN  %s\n", s)
	}
}

// openFilesLimit is the soft RLIMIT_NOFILE (Go raises it to the hard
// limit at start), or 0 if unknown.
func openFilesLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}
