package kas

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// KubeconfigOptions says whom a kubeconfig is for and where kas is.
type KubeconfigOptions struct {
	Agent string
	User  string
	// Token is the caller's token; empty writes a placeholder to replace.
	Token string
	// Server overrides the URL taken from agent.kubernetes_api.listen
	// (e.g. the public name of a load balancer), without /agents/….
	Server string
	// CAFile is the CA to trust; default: the listener's certificate_file
	// when TLS is on (right for a self-signed certificate).
	CAFile string
}

// Kubeconfig renders a kubeconfig through which kubectl reaches the agent's
// cluster via kas as the given user.
func Kubeconfig(cfg *Config, o KubeconfigOptions) ([]byte, error) {
	switch {
	case cfg.GitLab != nil:
		// Agents come from GitLab: --agent is the GitLab agent id, as
		// users[].agents names it (checked below).
	case !slices.Contains(agentNames(cfg), o.Agent):
		return nil, fmt.Errorf("--agent %q is not in agents[] of the kas config", o.Agent)
	}
	var user *UserEntry
	for i := range cfg.Users {
		if cfg.Users[i].Name == o.User {
			user = &cfg.Users[i]
		}
	}
	if user == nil {
		return nil, fmt.Errorf("--user %q is not in users[] of the kas config", o.User)
	}
	if !slices.Contains(user.Agents, o.Agent) {
		return nil, fmt.Errorf("user %q may not use agent %q: add it to users[].agents", o.User, o.Agent)
	}
	l := cfg.Agent.KubernetesAPI.Listen
	server := o.Server
	if server == "" {
		host, port, err := net.SplitHostPort(l.Address)
		if err != nil {
			return nil, fmt.Errorf("agent.kubernetes_api.listen.address %q: %w", l.Address, err)
		}
		if l.CertificateFile == "" {
			return nil, fmt.Errorf("agent.kubernetes_api.listen has no certificate_file, so the kubeconfig would say http://, "+
				"and kubectl does not send a token over plain HTTP (it would only say \"provide credentials\"): "+
				"give the listener certificate_file and key_file, or put a TLS-terminating proxy in front and pass --server https://HOST:%s", port)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return nil, fmt.Errorf("agent.kubernetes_api.listen.address %q listens on every interface, so kas cannot tell which name "+
				"callers reach it by (and its certificate must hold that name): pass --server https://HOST:%s", l.Address, port)
		}
		server = "https://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(server)
	switch {
	case err != nil:
		return nil, fmt.Errorf("--server %q: %w", server, err)
	case u.Scheme == "http":
		return nil, fmt.Errorf("--server %q is plain HTTP, and kubectl does not send a token over plain HTTP (it would only say \"provide credentials\"): use https://", server)
	case u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("--server %q: want https://HOST[:PORT]", server)
	case u.Path != "" && u.Path != "/":
		return nil, fmt.Errorf("--server %q: give kas's URL without a path; the kubeconfig adds /agents/%s", server, o.Agent)
	}
	server = strings.TrimSuffix(server, "/")
	cluster := map[string]any{"server": server + "/agents/" + o.Agent}
	caFile := o.CAFile
	if caFile == "" && l.CertificateFile != "" {
		caFile = l.CertificateFile
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA for the kubeconfig: %w", err)
		}
		cluster["certificate-authority-data"] = base64.StdEncoding.EncodeToString(pem)
	}
	token := o.Token
	if token == "" {
		token = "<the token of " + o.User + ">"
	}
	name := "kas-" + o.Agent
	doc := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []any{map[string]any{"name": name, "cluster": cluster}},
		"users":           []any{map[string]any{"name": o.User, "user": map[string]any{"token": token}}},
		"contexts":        []any{map[string]any{"name": name, "context": map[string]any{"cluster": name, "user": o.User}}},
		"current-context": name,
	}
	return yaml.Marshal(doc)
}

func agentNames(cfg *Config) []string {
	names := make([]string, 0, len(cfg.Agents))
	for _, a := range cfg.Agents {
		names = append(names, a.Name)
	}
	return names
}
