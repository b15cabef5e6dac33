package replicas

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"kubetunnel/kasproxy"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestTokenRoundTrip(t *testing.T) {
	s, err := NewSecret(testKey)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(kasproxy.User{Name: "alice", Groups: []string{"developers", "ops"}, Agents: []string{"x", "y"}}, "prod")
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.AuthenticateUser(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	// The token reaches only the agent it names, whatever the caller may
	// reach at the receiving replica.
	if u.Name != "alice" || strings.Join(u.Groups, ",") != "developers,ops" || strings.Join(u.Agents, ",") != "prod" {
		t.Errorf("got %+v", u)
	}
}

func TestTokenRefusals(t *testing.T) {
	s, _ := NewSecret(testKey)
	other, _ := NewSecret([]byte("another-secret-of-32-bytes-or-more!"))
	good, _ := s.Sign(kasproxy.User{Name: "alice"}, "prod")
	past, _ := NewSecret(testKey)
	past.now = func() time.Time { return time.Now().Add(-2 * TokenLifetime) }
	expired, _ := past.Sign(kasproxy.User{Name: "alice"}, "prod")
	future, _ := NewSecret(testKey)
	future.now = func() time.Time { return time.Now().Add(time.Hour) }
	notYet, _ := future.Sign(kasproxy.User{Name: "alice"}, "prod")
	fromOther, _ := other.Sign(kasproxy.User{Name: "alice"}, "prod")
	claims := func(mut func(*Claims)) jwt.Claims {
		now := time.Now()
		c := &Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: TokenIssuer, Audience: jwt.ClaimStrings{TokenAudience}, Subject: "alice",
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))}, Agent: "prod"}
		mut(c)
		return c
	}
	sign := func(m jwt.SigningMethod, c jwt.Claims, key any) string {
		tok, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases := map[string]string{
		"empty":            "",
		"garbage":          "not-a-jwt",
		"other secret":     fromOther,
		"expired":          expired,
		"issued in future": notYet,
		"tampered":         good[:len(good)-2] + "xx",
		"alg none":         sign(jwt.SigningMethodNone, claims(func(*Claims) {}), jwt.UnsafeAllowNoneSignatureType),
		"HS512":            sign(jwt.SigningMethodHS512, claims(func(*Claims) {}), testKey),
		"wrong audience":   sign(jwt.SigningMethodHS256, claims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"gitlab"} }), testKey),
		"wrong issuer":     sign(jwt.SigningMethodHS256, claims(func(c *Claims) { c.Issuer = "gitlab" }), testKey),
		"no expiry":        sign(jwt.SigningMethodHS256, claims(func(c *Claims) { c.ExpiresAt = nil }), testKey),
		"no agent":         sign(jwt.SigningMethodHS256, claims(func(c *Claims) { c.Agent = "" }), testKey),
		"no subject":       sign(jwt.SigningMethodHS256, claims(func(c *Claims) { c.Subject = "" }), testKey),
	}
	if _, err := s.Verify(sign(jwt.SigningMethodHS256, claims(func(*Claims) {}), testKey)); err != nil {
		t.Fatalf("the control token does not verify: %v", err)
	}
	for name, tok := range cases {
		_, err := s.AuthenticateUser(context.Background(), tok)
		if !errors.Is(err, kasproxy.ErrUnauthenticated) || !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: err %v, want ErrUnauthenticated and ErrBadToken", name, err)
		}
	}
}

func TestSecretTooShort(t *testing.T) {
	if _, err := NewSecret([]byte("short")); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("err %v", err)
	}
}

// Tokens come from the network: no input may panic or verify without the
// secret.
func FuzzVerifyToken(f *testing.F) {
	s, _ := NewSecret(testKey)
	good, _ := s.Sign(kasproxy.User{Name: "alice", Groups: []string{"g"}}, "prod")
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok)
		if err == nil && tok != good {
			// Only an exact valid signature verifies: re-signing the same
			// claims must give the same token.
			again, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testKey)
			if again != tok {
				t.Fatalf("a token that was not signed with the secret verified: %q", tok)
			}
		}
	})
}
