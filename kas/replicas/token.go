package replicas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"kubetunnel/kasproxy"
)

// Token settings: who issues the private API tokens, for whom, and how
// long they live. Peers allow Leeway of clock difference.
const (
	TokenIssuer   = "kas"
	TokenAudience = "kas-private-api"
	TokenLifetime = time.Minute
	TokenLeeway   = 10 * time.Second
	// MinSecretBytes is the shortest secret accepted (HS256 wants 32).
	MinSecretBytes = 32
)

// ErrBadToken is a private API token that does not verify.
var ErrBadToken = errors.New("invalid private API token")

// Claims are what a private API token carries.
type Claims struct {
	jwt.RegisteredClaims
	// Agent is the only agent the token may reach.
	Agent  string   `json:"agent"`
	Groups []string `json:"groups,omitempty"`
}

// Secret is the shared secret of the private API.
type Secret struct {
	key []byte
	now func() time.Time
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
	return &Secret{key: bytes.Clone(key), now: time.Now}, nil
}

// Sign issues a token for u to reach agent through a peer.
func (s *Secret) Sign(u kasproxy.User, agent string) (string, error) {
	now := s.now()
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    TokenIssuer,
			Audience:  jwt.ClaimStrings{TokenAudience},
			Subject:   u.Name,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(TokenLifetime)),
		},
		Agent:  agent,
		Groups: u.Groups,
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.key)
}

// Verify checks a token: signature (HMAC, compared in constant time by
// the jwt package), algorithm, issuer, audience and lifetime.
func (s *Secret) Verify(token string) (*Claims, error) {
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
	if c.Subject == "" || c.Agent == "" {
		return nil, fmt.Errorf("%w: no subject or agent", ErrBadToken)
	}
	return c, nil
}

// AuthenticateUser implements kasproxy.Authenticator for the private API:
// the caller is the one the token names, and may reach only its agent.
func (s *Secret) AuthenticateUser(_ context.Context, token string) (kasproxy.User, error) {
	c, err := s.Verify(token)
	if err != nil {
		return kasproxy.User{}, fmt.Errorf("%w: %w", kasproxy.ErrUnauthenticated, err)
	}
	return kasproxy.User{Name: c.Subject, Groups: c.Groups, Agents: []string{c.Agent}}, nil
}

var _ kasproxy.Authenticator = (*Secret)(nil)
