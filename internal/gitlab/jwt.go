package gitlab

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// JWT issuers and audiences of the two directions.
const (
	// IssuerKas and AudienceGitLab sign kas's calls to GitLab.
	IssuerKas      = "gitlab-kas"
	AudienceGitLab = "gitlab"
	// IssuerGitLab and AudienceKas sign GitLab's calls to kas's api listener.
	IssuerGitLab = "gitlab"
	AudienceKas  = "gitlab-kas"
	// HeaderKasAPIRequest carries kas's JWT on every internal API call.
	HeaderKasAPIRequest = "Gitlab-Kas-Api-Request"
)

// jwtLifetime and jwtBackdate are the token's validity window: short, with
// nbf a little in the past for clocks that disagree.
const (
	jwtLifetime = 30 * time.Second
	jwtBackdate = 5 * time.Second
	// jwtLeeway is the clock skew a verifier tolerates.
	jwtLeeway = 5 * time.Second
	// maxJWTLen bounds what a verifier parses.
	maxJWTLen = 4096
)

// ErrInvalidJWT is a token that does not verify; the wrapped message says
// why (for logs of the side that checks, never sent back in detail).
var ErrInvalidJWT = errors.New("invalid JWT")

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
}

// Claims are the registered claims kas and GitLab use.
type Claims struct {
	Issuer    string `json:"iss,omitempty"`
	Audience  string `json:"aud,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	NotBefore int64  `json:"nbf,omitempty"`
	Expires   int64  `json:"exp,omitempty"`
}

var b64 = base64.RawURLEncoding

// SignJWT returns an HS256 JWT from iss to aud, valid from a few seconds
// before now for jwtLifetime.
func SignJWT(key []byte, iss, aud string, now time.Time) string {
	c := Claims{
		Issuer:    iss,
		Audience:  aud,
		IssuedAt:  now.Unix(),
		NotBefore: now.Add(-jwtBackdate).Unix(),
		Expires:   now.Add(jwtLifetime).Unix(),
	}
	return signClaims(key, c)
}

func signClaims(key []byte, c Claims) string {
	h, _ := json.Marshal(jwtHeader{Alg: "HS256", Typ: "JWT"})
	p, _ := json.Marshal(c)
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	return signing + "." + b64.EncodeToString(mac(key, signing))
}

func mac(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// audience is aud as a string or a list of strings (RFC 7519 allows both).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// VerifyJWT checks an HS256 token: signature (constant time), alg, issuer
// (when iss is not empty), audience, and exp/nbf/iat against now with a
// few seconds of leeway. A token without exp is refused.
func VerifyJWT(key []byte, token, iss, aud string, now time.Time) error {
	if len(token) > maxJWTLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidJWT, maxJWTLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%w: not three dot-separated parts", ErrInvalidJWT)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("%w: signature is not base64url", ErrInvalidJWT)
	}
	if !hmac.Equal(sig, mac(key, parts[0]+"."+parts[1])) {
		return fmt.Errorf("%w: bad signature", ErrInvalidJWT)
	}
	var h jwtHeader
	if err := decodePart(parts[0], &h); err != nil {
		return fmt.Errorf("%w: header: %v", ErrInvalidJWT, err)
	}
	if h.Alg != "HS256" {
		return fmt.Errorf("%w: alg %q, want HS256", ErrInvalidJWT, h.Alg)
	}
	var c struct {
		Issuer    string   `json:"iss"`
		Audience  audience `json:"aud"`
		IssuedAt  *float64 `json:"iat"`
		NotBefore *float64 `json:"nbf"`
		Expires   *float64 `json:"exp"`
	}
	if err := decodePart(parts[1], &c); err != nil {
		return fmt.Errorf("%w: claims: %v", ErrInvalidJWT, err)
	}
	if iss != "" && c.Issuer != iss {
		return fmt.Errorf("%w: iss %q, want %q", ErrInvalidJWT, c.Issuer, iss)
	}
	found := false
	for _, a := range c.Audience {
		found = found || a == aud
	}
	if !found {
		return fmt.Errorf("%w: aud %q, want %q", ErrInvalidJWT, []string(c.Audience), aud)
	}
	t := float64(now.Unix())
	lee := jwtLeeway.Seconds()
	switch {
	case c.Expires == nil:
		return fmt.Errorf("%w: no exp", ErrInvalidJWT)
	case t >= *c.Expires+lee:
		return fmt.Errorf("%w: expired", ErrInvalidJWT)
	case c.NotBefore != nil && t+lee < *c.NotBefore:
		return fmt.Errorf("%w: not valid yet (nbf)", ErrInvalidJWT)
	case c.IssuedAt != nil && t+lee < *c.IssuedAt:
		return fmt.Errorf("%w: issued in the future (iat)", ErrInvalidJWT)
	}
	return nil
}

func decodePart(s string, v any) error {
	b, err := b64.DecodeString(s)
	if err != nil {
		return fmt.Errorf("not base64url: %w", err)
	}
	return json.Unmarshal(b, v)
}

// minSecretLen is the shortest decoded secret accepted; GitLab generates 32
// random bytes.
const minSecretLen = 32

// ReadSecretFile reads a GitLab shared secret: base64 of at least 32
// bytes (GitLab's .gitlab_kas_secret), surrounding whitespace ignored.
func ReadSecretFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret: %w", err)
	}
	key, err := DecodeSecret(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// DecodeSecret decodes the content of a secret file.
func DecodeSecret(data []byte) ([]byte, error) {
	s := strings.TrimSpace(string(data))
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64 (GitLab's .gitlab_kas_secret is, e.g. from: head -c 32 /dev/urandom | base64): %w", err)
	}
	if len(key) < minSecretLen {
		return nil, fmt.Errorf("decodes to %d bytes, want at least %d", len(key), minSecretLen)
	}
	return key, nil
}
