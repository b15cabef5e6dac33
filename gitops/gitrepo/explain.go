package gitrepo

import (
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh/knownhosts"
)

// explain adds what to do to the transport errors whose own words do not
// say it.
func explain(err error, r Repository) error {
	var keyErr *knownhosts.KeyError
	switch {
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return fmt.Errorf("%w: the server's host key is not in known_hosts_file %s", err, r.KnownHostsFile)
	case errors.As(err, &keyErr):
		return fmt.Errorf("%w: the server's host key differs from the one in known_hosts_file %s; if the server's key was changed on purpose, update the file", err, r.KnownHostsFile)
	case errors.Is(err, transport.ErrAuthenticationRequired) && r.TokenFile == "" && r.PasswordFile == "":
		return fmt.Errorf("%w: set token_file (or username and password_file)", err)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Errorf("%w: check the credentials in %s", err, firstNonEmpty(r.TokenFile, r.PasswordFile))
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fmt.Errorf("%w: check url, and that the credentials can read it", err)
	}
	return err
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
