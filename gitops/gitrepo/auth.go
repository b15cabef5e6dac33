package gitrepo

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// defaultTokenUsername goes with a token when no username is configured:
// GitLab accepts any username with a token, and documents this one.
const defaultTokenUsername = "oauth2"

// credentials are what one fetch needs to reach a repository.
type credentials struct {
	auth     transport.AuthMethod // nil for none
	caBundle []byte
}

// credentials reads the credential files. It runs before every fetch, so a
// rotated secret is used without a restart. Errors name the key, never the
// secret.
func (r *Repository) credentials() (credentials, error) {
	ep, err := transport.NewEndpoint(r.URL)
	if err != nil {
		return credentials{}, fmt.Errorf("url: %w", err)
	}
	var c credentials
	switch ep.Protocol {
	case protoHTTPS, protoHTTP:
		if r.CAFile != "" {
			if c.caBundle, err = os.ReadFile(r.CAFile); err != nil {
				return credentials{}, fmt.Errorf("ca_file: %w", err)
			}
		}
		switch {
		case r.TokenFile != "":
			token, err := readSecret("token_file", r.TokenFile)
			if err != nil {
				return credentials{}, err
			}
			user := r.Username
			if user == "" {
				user = defaultTokenUsername
			}
			c.auth = &githttp.BasicAuth{Username: user, Password: token}
		case r.PasswordFile != "":
			password, err := readSecret("password_file", r.PasswordFile)
			if err != nil {
				return credentials{}, err
			}
			c.auth = &githttp.BasicAuth{Username: r.Username, Password: password}
		}
	case protoSSH:
		user := r.Username
		if user == "" {
			user = ep.User
		}
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, r.SSHKeyFile, "")
		if err != nil {
			return credentials{}, fmt.Errorf("ssh_key_file: %w", err)
		}
		hosts, err := gitssh.NewKnownHostsDb(r.KnownHostsFile)
		if err != nil {
			return credentials{}, fmt.Errorf("known_hosts_file: %w", err)
		}
		keys.HostKeyCallback = hosts.HostKeyCallback()
		// Offer only the key types known_hosts has for this host, or the
		// server may pick another type and fail the check.
		port := ep.Port
		if port == 0 {
			port = 22
		}
		keys.HostKeyAlgorithms = hosts.HostKeyAlgorithms(net.JoinHostPort(ep.Host, strconv.Itoa(port)))
		c.auth = keys
	}
	return c, nil
}

func readSecret(key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", key, path)
	}
	return s, nil
}
