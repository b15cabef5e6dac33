package check

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"kubetunnel/internal/gitlab"
	"kubetunnel/kas"
)

// gitlabCheckTimeout bounds kas check's call to GitLab.
const gitlabCheckTimeout = 15 * time.Second

// checkGitLab checks gitlab: and api: the way kas would use them: the
// shared secret decodes to at least 32 bytes, GitLab answers and accepts
// kas's JWT (an empty usage_metrics report: 401 is the JWT refused,
// 204/400 accepted; see gitlab.Client.ProbeJWT), the git credential file
// is readable, and the api listener's secret (and TLS pair) load.
func checkGitLab(ctx context.Context, cfg *kas.Config, verdict func(string, error, string), w io.Writer) {
	g := cfg.GitLab
	if u, err := url.Parse(g.Address); err == nil && u.Scheme == "http" {
		fmt.Fprintf(w, "WARN  gitlab.address %q is plain http://: agent tokens and kas's JWT cross the network in clear (kas sends no git credential over it); use https:// unless GitLab is on this host\n", g.Address)
	}
	secret, err := gitlab.ReadSecretFile(g.AuthenticationSecretFile)
	verdict("gitlab.authentication_secret_file "+g.AuthenticationSecretFile, err, fmt.Sprintf(": %d bytes", len(secret)))
	if err == nil {
		client, err := kas.NewGitLabClient(cfg)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, gitlabCheckTimeout)
			err = client.ProbeJWT(pctx)
			cancel()
		}
		switch {
		case errors.Is(err, gitlab.ErrUnauthorized):
			err = errors.New("GitLab refuses kas's JWT (401): gitlab.authentication_secret_file must hold GitLab's own secret (gitlab_kas_secret)")
		case errors.Is(err, gitlab.ErrForbidden), errors.Is(err, gitlab.ErrNotFound):
			err = fmt.Errorf("%w: is gitlab.address GitLab's internal API (with GitLab's agent server enabled)?", err)
		case err != nil:
			err = fmt.Errorf("GitLab is unreachable: %w", err)
		}
		verdict("gitlab "+g.Address, err, ": reachable, accepts kas's JWT")
	}
	if g.Git.PasswordFile == "" {
		verdict("gitlab.git", nil, ": not set, kas fetches GitLab projects without a credential (public projects only)")
	} else {
		b, err := os.ReadFile(g.Git.PasswordFile)
		if err == nil && len(bytes.TrimSpace(b)) == 0 {
			err = fmt.Errorf("%s is empty", g.Git.PasswordFile)
		}
		verdict("gitlab.git.password_file "+g.Git.PasswordFile, err, " (user "+g.Git.Username+")")
	}
	if cfg.API == nil {
		verdict("api.listen", nil, ": not set, GitLab cannot reach kas (agent tracker, push notifications)")
		return
	}
	l := cfg.API.Listen
	apiSecret, err := gitlab.ReadSecretFile(l.AuthenticationSecretFile)
	detail := fmt.Sprintf(": %d bytes", len(apiSecret))
	if err == nil && secret != nil && subtle.ConstantTimeCompare(apiSecret, secret) == 0 {
		// Not wrong in itself (GitLab may sign with another key), but
		// GitLab's own kas uses one secret for both directions.
		detail += ", not the same key as gitlab.authentication_secret_file (GitLab signs with gitlab_kas_secret)"
	}
	verdict("api.listen.authentication_secret_file "+l.AuthenticationSecretFile, err, detail)
	if l.CertificateFile != "" {
		_, err := tls.LoadX509KeyPair(l.CertificateFile, l.KeyFile)
		verdict("api.listen TLS", err, "")
	}
}
