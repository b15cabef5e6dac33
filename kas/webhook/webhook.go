package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/gitops/gitrepo"
	"kubetunnel/kas/internal/apijson"
)

// MaxBody bounds a webhook's body. GitLab and GitHub push events
// list at most 20 commits, far below it.
const MaxBody = 1 << 20

// Results of a webhook, as kas_git_webhook_requests_total labels them.
const (
	webhookTriggered    = "triggered"
	webhookUnmatched    = "unmatched"
	webhookIgnored      = "ignored"
	webhookUnauthorized = "unauthorized"
	webhookBadRequest   = "bad_request"
	webhookDisabled     = "disabled"
	webhookError        = "error"
)

// Handler serves POST /api/v1/webhooks/git: a push to a repository
// triggers an immediate fetch of every configured repository it names,
// instead of waiting for the next poll.
//
// It accepts GitLab and GitHub push events, authenticated by the shared
// secret in git.webhook_secret_file (read again on every request, so it
// can be rotated without a restart):
//
//   - GitLab: header X-Gitlab-Token equal to the secret (compared in
//     constant time). Events "Push Hook", "Tag Push Hook" and "System Hook".
//   - GitHub: header X-Hub-Signature-256 "sha256=<hex HMAC-SHA256 of the
//     body keyed with the secret>". Events push, create and delete; ping is
//     answered 200.
//
// With gitlab:, the GitLab projects kas mirrors (those an agent's config
// names) are matched too: by path_with_namespace, or by URL under
// gitlab.address.
//
// A repository matches when one of the event's URLs (GitLab
// project.git_http_url, git_ssh_url, web_url, repository.git_http_url,
// git_ssh_url, homepage; GitHub repository.clone_url, ssh_url, html_url)
// names the same host and path as its url (scheme, user, port, a trailing
// ".git" or "/" and letter case ignored), or when its id equals the
// project's path (GitLab project.path_with_namespace, GitHub
// repository.full_name; case ignored). A false match costs one fetch that
// finds nothing new.
//
// Answers: 202 {"triggered": [ids]}; 200 when no configured repository
// matches or the event is not a push; 401 for a missing or wrong secret;
// 400 for a body that is not a push event; 413 over 1 MiB; 503 when 32
// GitHub bodies are being read already; 404 when git.webhook_secret_file
// is not set (webhooks disabled). A GitLab token is checked before the
// body is read; the observability listener bounds the time to read it
// (limits.observability_read_timeout).
type Handler struct {
	cfg      Config
	requests *prometheus.CounterVec
	// bodyReads bounds GitHub bodies read at once before their signature
	// is checked.
	bodyReads chan struct{}
}

// Config is what a Handler needs.
type Config struct {
	// SecretFile is git.webhook_secret_file; empty disables webhooks
	// (404).
	SecretFile string
	// Repositories lists the repositories a push may name now:
	// repositories[] and, with gitlab:, the GitLab projects kas mirrors.
	Repositories func() []gitrepo.Repository
	// Trigger asks for an immediate fetch of a repository by id.
	Trigger func(id string) error
	Logger  *slog.Logger
	// Metrics registers kas_git_webhook_requests_total.
	Metrics prometheus.Registerer
}

// maxWebhookBodyReads bounds unauthenticated (GitHub) webhook bodies read
// at once: with MaxBody, at most 32 MiB.
const maxWebhookBodyReads = 32

// New makes the handler; it fails when SecretFile is set but cannot be
// read or is empty.
func New(cfg Config) (*Handler, error) {
	h := &Handler{
		cfg:       cfg,
		bodyReads: make(chan struct{}, maxWebhookBodyReads),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kas_git_webhook_requests_total",
			Help: "Git push webhooks received, by result (triggered, unmatched, ignored, unauthorized, bad_request, disabled, error).",
		}, []string{"result"}),
	}
	for _, r := range []string{webhookTriggered, webhookUnmatched, webhookIgnored, webhookUnauthorized, webhookBadRequest, webhookDisabled, webhookError} {
		h.requests.WithLabelValues(r)
	}
	cfg.Metrics.MustRegister(h.requests)
	if cfg.SecretFile != "" {
		if _, err := h.secret(); err != nil {
			return nil, fmt.Errorf("git.webhook_secret_file: %w", err)
		}
	}
	return h, nil
}

// secret reads the shared secret; surrounding white space (a trailing
// newline) is not part of it.
func (h *Handler) secret() ([]byte, error) {
	b, err := os.ReadFile(h.cfg.SecretFile)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", h.cfg.SecretFile)
	}
	return b, nil
}

type webhookAnswer struct {
	Triggered []string `json:"triggered"`
	Message   string   `json:"message,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	answer := func(result string, code int, v any) {
		h.requests.WithLabelValues(result).Inc()
		apijson.Write(w, code, v)
	}
	fail := func(result string, code int, format string, args ...any) {
		answer(result, code, apijson.Error{Error: fmt.Sprintf(format, args...)})
	}
	if h.cfg.SecretFile == "" {
		fail(webhookDisabled, http.StatusNotFound, "git webhooks are disabled: set git.webhook_secret_file in the kas config")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(webhookBadRequest, http.StatusMethodNotAllowed, "use POST")
		return
	}
	secret, err := h.secret()
	if err != nil {
		h.cfg.Logger.Error("Git webhook: cannot read git.webhook_secret_file", "err", err)
		fail(webhookError, http.StatusInternalServerError, "kas cannot read its webhook secret")
		return
	}
	refuse := func() {
		h.cfg.Logger.Warn("Git webhook refused: wrong or missing secret", "remote", r.RemoteAddr)
		fail(webhookUnauthorized, http.StatusUnauthorized, "missing or wrong X-Gitlab-Token or X-Hub-Signature-256")
	}
	// GitLab's token is a header: check it before reading a byte of the
	// body. GitHub signs the body, which must be read first: those reads
	// are bounded in size (MaxBody), in time (the observability
	// listener's read timeout) and in number at once (bodyReads).
	provider, event, ok := authenticateHeaders(r.Header, secret)
	if !ok {
		refuse()
		return
	}
	if provider == "github" {
		select {
		case h.bodyReads <- struct{}{}:
			defer func() { <-h.bodyReads }()
		default:
			fail(webhookError, http.StatusServiceUnavailable, "too many unauthenticated webhook bodies being read: retry")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			fail(webhookBadRequest, http.StatusRequestEntityTooLarge, "body over %d bytes", MaxBody)
			return
		}
		fail(webhookBadRequest, http.StatusBadRequest, "reading the body: %v", err)
		return
	}
	if provider == "github" && !githubSignatureValid(r.Header, body, secret) {
		refuse()
		return
	}
	if provider == "github" && event == "ping" {
		answer(webhookIgnored, http.StatusOK, webhookAnswer{Triggered: []string{}, Message: "pong"})
		return
	}
	if !isPushEvent(provider, event) {
		answer(webhookIgnored, http.StatusOK, webhookAnswer{Triggered: []string{}, Message: fmt.Sprintf("%s event %q is not a push: ignored", provider, event)})
		return
	}
	var p pushEvent
	if err := json.Unmarshal(body, &p); err != nil {
		fail(webhookBadRequest, http.StatusBadRequest, "not a %s push event: %v", provider, err)
		return
	}
	urls, names := p.identities()
	if len(urls) == 0 && len(names) == 0 {
		fail(webhookBadRequest, http.StatusBadRequest, "not a %s push event: no project or repository URL in the body", provider)
		return
	}
	ids := matchRepositories(h.cfg.Repositories(), urls, names)
	log := h.cfg.Logger.With("provider", provider, "event", event, "urls", urls, "names", names)
	if len(ids) == 0 {
		log.Info("Git webhook matches no configured repository")
		answer(webhookUnmatched, http.StatusOK, webhookAnswer{Triggered: []string{}, Message: "no configured repository matches"})
		return
	}
	for _, id := range ids {
		if err := h.cfg.Trigger(id); err != nil { // only an unknown id, which matchRepositories excludes
			log.Error("Git webhook: trigger failed", "repository", id, "err", err)
		}
	}
	log.Info("Git webhook: fetching at once", "repositories", ids)
	answer(webhookTriggered, http.StatusAccepted, webhookAnswer{Triggered: ids})
}

// authenticateHeaders says which provider a webhook is from and its
// event. For GitLab it checks the token (ok false: wrong or missing); for
// GitHub it only checks that a signature is there, and the body must then
// pass githubSignatureValid. No provider header: ok false.
func authenticateHeaders(hdr http.Header, secret []byte) (provider, event string, ok bool) {
	if sig := hdr.Get("X-Hub-Signature-256"); sig != "" {
		return "github", hdr.Get("X-GitHub-Event"), strings.HasPrefix(sig, "sha256=")
	}
	if token := hdr.Get("X-Gitlab-Token"); token != "" {
		// Hash both sides so the comparison takes the same time whatever
		// the lengths.
		a, b := sha256.Sum256([]byte(token)), sha256.Sum256(secret)
		return "gitlab", hdr.Get("X-Gitlab-Event"), subtle.ConstantTimeCompare(a[:], b[:]) == 1
	}
	return "", "", false
}

// githubSignatureValid checks X-Hub-Signature-256: "sha256=<hex
// HMAC-SHA256 of the body keyed with the secret>".
func githubSignatureValid(hdr http.Header, body, secret []byte) bool {
	got, err := hex.DecodeString(strings.TrimPrefix(hdr.Get("X-Hub-Signature-256"), "sha256="))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// isPushEvent reports whether an event can move branches or tags. An event
// header that is absent counts as a push.
func isPushEvent(provider, event string) bool {
	if event == "" {
		return true
	}
	switch provider {
	case "github":
		return event == "push" || event == "create" || event == "delete"
	default:
		return event == "Push Hook" || event == "Tag Push Hook" || event == "System Hook"
	}
}

// pushEvent holds the fields of GitLab and GitHub push events that name
// the repository.
type pushEvent struct {
	Project struct {
		GitHTTPURL        string `json:"git_http_url"`
		GitSSHURL         string `json:"git_ssh_url"`
		WebURL            string `json:"web_url"`
		PathWithNamespace string `json:"path_with_namespace"`
	} `json:"project"`
	Repository struct {
		// GitLab
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
		Homepage   string `json:"homepage"`
		// GitHub
		CloneURL string `json:"clone_url"`
		SSHURL   string `json:"ssh_url"`
		HTMLURL  string `json:"html_url"`
		FullName string `json:"full_name"`
	} `json:"repository"`
}

// identities returns the URLs and paths an event names, without blanks.
func (p *pushEvent) identities() (urls, names []string) {
	for _, u := range []string{p.Project.GitHTTPURL, p.Project.GitSSHURL, p.Project.WebURL,
		p.Repository.GitHTTPURL, p.Repository.GitSSHURL, p.Repository.Homepage,
		p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.HTMLURL} {
		if u != "" && !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	for _, n := range []string{p.Project.PathWithNamespace, p.Repository.FullName} {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return urls, names
}

// matchRepositories returns the sorted ids of the repositories an event
// names by URL or by path.
func matchRepositories(repos []gitrepo.Repository, urls, names []string) []string {
	keys := make([]string, 0, len(urls))
	for _, u := range urls {
		if k := repoKey(u); k != "" {
			keys = append(keys, k)
		}
	}
	ids := []string{}
	for _, r := range repos {
		match := slices.Contains(keys, repoKey(r.URL))
		for _, n := range names {
			match = match || strings.EqualFold(strings.Trim(n, "/"), strings.Trim(r.ID, "/"))
		}
		if match {
			ids = append(ids, r.ID)
		}
	}
	slices.Sort(ids)
	// A repositories[] id may also be a mirrored GitLab project's path.
	return slices.Compact(ids)
}

// repoKey reduces a git URL to "host/path" (lower case, no scheme, user,
// port, trailing "/" or ".git"), so that the https and ssh URLs of one
// repository compare equal: "https://GitLab.example.com/g/p.git",
// "ssh://git@gitlab.example.com:2222/g/p" and "git@gitlab.example.com:g/p.git"
// all give "gitlab.example.com/g/p". A local path stays a path.
func repoKey(raw string) string {
	s := strings.TrimSpace(raw)
	var host, path string
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		host, path = u.Hostname(), u.Path
	} else if at, rest, ok := strings.Cut(s, ":"); ok && !strings.Contains(at, "/") && !strings.HasPrefix(rest, "//") {
		// scp-like: [user@]host:path
		_, host, _ = strings.Cut(at, "@")
		if host == "" {
			host = at
		}
		path = rest
	} else if u, err := url.Parse(s); err == nil && u.Scheme == "file" {
		path = u.Path
	} else {
		path = s
	}
	path = strings.TrimSuffix(strings.TrimRight(path, "/"), ".git")
	path = strings.Trim(path, "/")
	if host == "" && path == "" {
		return ""
	}
	return strings.ToLower(host + "/" + path)
}
