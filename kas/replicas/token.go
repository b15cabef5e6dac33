package replicas

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"kubetunnel/kasproxy"
)

// Token settings: who issues the private API tokens, for whom, and how
// long they live. A token is made for one request to one replica, just
// before it is sent, so it needs to live only as long as the request takes
// to arrive; peers allow Leeway of clock difference. TokenLifetime +
// TokenLeeway bounds how long a captured token could be replayed, and only
// for the same request to the same replica, once.
const (
	TokenIssuer   = "kas"
	TokenAudience = "kas-private-api"
	TokenLifetime = 5 * time.Second
	TokenLeeway   = 5 * time.Second
	// MinSecretBytes is the shortest secret accepted (HS256 wants 32).
	MinSecretBytes = 32
)

// ErrBadToken is a private API token that does not verify.
var ErrBadToken = errors.New("invalid private API token")

// Target is what one token is good for: one request (method, escaped
// path, query) to one replica (its private API URL, as in Redis).
type Target struct {
	Replica string
	Method  string
	Path    string
	Query   string
}

// TargetOf is the target of a request to the replica at replica.
func TargetOf(replica string, r *http.Request) Target {
	return Target{Replica: replica, Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery}
}

// Claims are what a private API token carries.
type Claims struct {
	jwt.RegisteredClaims
	// Agent is the only agent the token may reach.
	Agent  string   `json:"agent"`
	Groups []string `json:"groups,omitempty"`
	// The one request the token is good for.
	Replica string `json:"replica"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	Query   string `json:"query,omitempty"`
}

// Secret is the shared secret of the private API. The replica that serves
// the private API also remembers the tokens it accepted (a token is good
// once) and its own URL (a token is good at one replica).
type Secret struct {
	key []byte
	now func() time.Time

	self atomic.Pointer[string]
	mu   sync.Mutex // guards used
	used map[string]time.Time
}

// ReadSecret reads private_api.authentication_secret_file. Leading and
// trailing white space is ignored (a file written by echo ends in "\n").
func ReadSecret(path string) (*Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the private API secret: %w", err)
	}
	return NewSecret(bytes.TrimSpace(b))
}

// NewSecret makes a secret from its bytes.
func NewSecret(key []byte) (*Secret, error) {
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("the private API secret has %d bytes, want at least %d (e.g. head -c 32 /dev/urandom | base64 > secret)", len(key), MinSecretBytes)
	}
	return &Secret{key: bytes.Clone(key), now: time.Now, used: map[string]time.Time{}}, nil
}

// SetSelf sets the URL this replica advertises: tokens for any other
// replica are refused here. Until it is set, every token is refused.
func (s *Secret) SetSelf(url string) { s.self.Store(&url) }

// Sign issues a token for u to reach agent with the request t names.
func (s *Secret) Sign(u kasproxy.User, agent string, t Target) (string, error) {
	now := s.now()
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    TokenIssuer,
			Audience:  jwt.ClaimStrings{TokenAudience},
			Subject:   u.Name,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(TokenLifetime)),
			ID:        hex.EncodeToString(id),
		},
		Agent:   agent,
		Groups:  u.Groups,
		Replica: t.Replica,
		Method:  t.Method,
		Path:    t.Path,
		Query:   t.Query,
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
}

// Verify checks a token: signature (HMAC, compared in constant time by
// the jwt package), algorithm, issuer, audience, lifetime (at most
// TokenLifetime), and that it was made for the request t. It does not
// mark the token used (see AuthenticateRequest).
func (s *Secret) Verify(token string, t Target) (*Claims, error) {
	c := &Claims{}
	_, err := jwt.ParseWithClaims(token, c, func(*jwt.Token) (any, error) { return s.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(TokenIssuer),
		jwt.WithAudience(TokenAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(TokenLeeway),
		jwt.WithStrictDecoding(), // one spelling per token: no malleable trailing bits
		jwt.WithTimeFunc(s.now),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	switch {
	case c.Subject == "" || c.Agent == "":
		return nil, fmt.Errorf("%w: no subject or agent", ErrBadToken)
	case c.IssuedAt == nil || c.ExpiresAt.Sub(c.IssuedAt.Time) > TokenLifetime:
		return nil, fmt.Errorf("%w: lives longer than %v", ErrBadToken, TokenLifetime)
	case c.ID == "":
		return nil, fmt.Errorf("%w: no id", ErrBadToken)
	case c.Replica != t.Replica:
		return nil, fmt.Errorf("%w: made for replica %q", ErrBadToken, c.Replica)
	case c.Method != t.Method || c.Path != t.Path || c.Query != t.Query:
		return nil, fmt.Errorf("%w: made for another request", ErrBadToken)
	}
	return c, nil
}

// AuthenticateRequest implements kasproxy.RequestAuthenticator for the
// private API: the token must be made for this request to this replica,
// and is good once; the caller is the one it names, and may reach only
// its agent.
func (s *Secret) AuthenticateRequest(r *http.Request, token string) (kasproxy.User, error) {
	self := s.self.Load()
	if self == nil {
		return kasproxy.User{}, fmt.Errorf("%w: %w: this replica's URL is not known yet", kasproxy.ErrUnauthenticated, ErrBadToken)
	}
	c, err := s.Verify(token, TargetOf(*self, r))
	if err == nil && !s.use(c.ID, c.ExpiresAt.Add(TokenLeeway)) {
		err = fmt.Errorf("%w: already used", ErrBadToken)
	}
	if err != nil {
		return kasproxy.User{}, fmt.Errorf("%w: %w", kasproxy.ErrUnauthenticated, err)
	}
	return kasproxy.User{Name: c.Subject, Groups: c.Groups, Agents: []string{c.Agent}}, nil
}

// AuthenticateUser refuses: a private API token is checked against its
// request (AuthenticateRequest).
func (s *Secret) AuthenticateUser(context.Context, string) (kasproxy.User, error) {
	return kasproxy.User{}, fmt.Errorf("%w: %w: a private API token needs its request", kasproxy.ErrUnauthenticated, ErrBadToken)
}

// use records a token id until it expires; false if it was used before.
func (s *Secret) use(id string, until time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.used) >= 1024 {
		// Tokens live seconds: forget the expired ones as new come in.
		for k, exp := range s.used {
			if now.After(exp) {
				delete(s.used, k)
			}
		}
	}
	if _, ok := s.used[id]; ok {
		return false
	}
	s.used[id] = until
	return true
}

var _ kasproxy.RequestAuthenticator = (*Secret)(nil)
