package gitrepo

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Repository is one entry of kas's repositories list. Credentials come from
// files, never inline, so they can live in Kubernetes secrets and rotate
// without a restart (the files are read on every fetch).
type Repository struct {
	// ID is how agent configs name the repository (manifest_projects[].id,
	// config projects).
	ID string `yaml:"id"`
	// URL is https://…, ssh://… or user@host:path, file:///… or a local path.
	URL string `yaml:"url"`
	// TokenFile holds an access token, sent over https as the password of
	// Username, or of "oauth2" when Username is empty (GitLab's convention).
	TokenFile string `yaml:"token_file"`
	// Username for https (with PasswordFile or TokenFile) or ssh (default:
	// the user in the URL, else "git").
	Username string `yaml:"username"`
	// PasswordFile holds the https password of Username.
	PasswordFile string `yaml:"password_file"`
	// SSHKeyFile holds an unencrypted private key in PEM or OpenSSH format.
	SSHKeyFile string `yaml:"ssh_key_file"`
	// KnownHostsFile holds the server's host key in known_hosts format.
	// Required for ssh: kas never trusts a host key it has not been given.
	KnownHostsFile string `yaml:"known_hosts_file"`
	// CAFile holds PEM certificates to trust for https, in addition to the
	// system's (for a git server with a private CA).
	CAFile string `yaml:"ca_file"`
}

// Protocols of a repository URL, as go-git names them.
const (
	protoHTTPS = "https"
	protoHTTP  = "http"
	protoSSH   = "ssh"
	protoFile  = "file"
)

// Validate checks one repository and names the bad key.
func (r *Repository) Validate() error {
	var errs []error
	fail := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if r.ID == "" {
		fail("id", "required")
	}
	if r.URL == "" {
		fail("url", "required")
		return errors.Join(errs...)
	}
	ep, err := transport.NewEndpoint(r.URL)
	if err != nil {
		fail("url", "%q is not a git URL: use https://host/path.git, ssh://git@host/path.git, file:///path or a local path", r.URL)
		return errors.Join(errs...)
	}
	if ep.Password != "" {
		fail("url", "contains a password: put it in password_file or token_file instead")
	}
	only := func(key, value, proto string) {
		if value != "" {
			fail(key, "only applies to %s URLs; remove it", proto)
		}
	}
	switch ep.Protocol {
	case protoHTTPS, protoHTTP:
		only("ssh_key_file", r.SSHKeyFile, "ssh")
		only("known_hosts_file", r.KnownHostsFile, "ssh")
		if r.TokenFile != "" && r.PasswordFile != "" {
			fail("token_file", "set token_file or password_file, not both")
		}
		if r.PasswordFile != "" && r.Username == "" {
			fail("username", "required with password_file")
		}
		if r.Username != "" && r.PasswordFile == "" && r.TokenFile == "" {
			fail("username", "needs password_file or token_file")
		}
		if ep.Protocol == protoHTTP && (r.TokenFile != "" || r.PasswordFile != "") {
			fail("url", "http:// would send the credentials in clear text: use https://")
		}
		if ep.Protocol == protoHTTP {
			only("ca_file", r.CAFile, "https")
		}
	case protoSSH:
		only("token_file", r.TokenFile, "https")
		only("password_file", r.PasswordFile, "https")
		only("ca_file", r.CAFile, "https")
		if r.SSHKeyFile == "" {
			fail("ssh_key_file", "required for ssh URLs")
		}
		if r.KnownHostsFile == "" {
			fail("known_hosts_file", "required for ssh URLs: add the server's host key (ssh-keyscan %s)", ep.Host)
		}
	case protoFile:
		for _, f := range []struct{ key, value string }{
			{"token_file", r.TokenFile}, {"username", r.Username}, {"password_file", r.PasswordFile},
			{"ssh_key_file", r.SSHKeyFile}, {"known_hosts_file", r.KnownHostsFile}, {"ca_file", r.CAFile},
		} {
			only(f.key, f.value, "https or ssh")
		}
	default:
		fail("url", "scheme %q is not supported: use https://, ssh://, file:// or a local path", ep.Protocol)
	}
	return errors.Join(errs...)
}

// ValidateRepositories validates a whole repositories list, naming each bad
// key as repositories[i].key, and checks that ids are unique.
func ValidateRepositories(repos []Repository) error {
	var errs []error
	first := make(map[string]int, len(repos))
	for i := range repos {
		if err := repos[i].Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				errs = append(errs, fmt.Errorf("repositories[%d].%s", i, line))
			}
		}
		if j, dup := first[repos[i].ID]; dup && repos[i].ID != "" {
			errs = append(errs, fmt.Errorf("repositories[%d].id: %q is already used by repositories[%d]", i, repos[i].ID, j))
		} else {
			first[repos[i].ID] = i
		}
	}
	return errors.Join(errs...)
}
