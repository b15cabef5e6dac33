package replicas

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"kubetunnel/kasproxy"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

const selfURL = "http://10.0.0.1:8155"

// testTarget is a GET of the pods of agent prod at selfURL.
var testTarget = Target{Replica: selfURL, Method: "GET", Path: "/agents/prod/api/v1/pods", Query: "limit=1"}

// request is the request testTarget names, as the private API gets it.
func request(tg Target) *http.Request {
	return httptest.NewRequest(tg.Method, tg.Path+"?"+tg.Query, nil)
}

func TestTokenRoundTrip(t *testing.T) {
	s, err := NewSecret(testKey)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSelf(selfURL)
	tok, err := s.Sign(kasproxy.User{Name: "alice", Groups: []string{"developers", "ops"}, Agents: []string{"x", "y"}}, "prod", testTarget)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.AuthenticateRequest(request(testTarget), tok)
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
	s.SetSelf(selfURL)
	alice := kasproxy.User{Name: "alice"}
	other, _ := NewSecret([]byte("another-secret-of-32-bytes-or-more!"))
	good, _ := s.Sign(alice, "prod", testTarget)
	past, _ := NewSecret(testKey)
	past.now = func() time.Time { return time.Now().Add(-TokenLifetime - TokenLeeway - time.Second) }
	expired, _ := past.Sign(alice, "prod", testTarget)
	future, _ := NewSecret(testKey)
	future.now = func() time.Time { return time.Now().Add(time.Hour) }
	notYet, _ := future.Sign(alice, "prod", testTarget)
	fromOther, _ := other.Sign(alice, "prod", testTarget)
	retarget := func(mut func(*Target)) string {
		tg := testTarget
		mut(&tg)
		tok, _ := s.Sign(alice, "prod", tg)
		return tok
	}
	claims := func(mut func(*Claims)) jwt.Claims {
		now := time.Now()
		c := &Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: TokenIssuer, Audience: jwt.ClaimStrings{TokenAudience}, Subject: "alice",
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(TokenLifetime)), ID: "id-" + now.String()}, Agent: "prod",
			Replica: testTarget.Replica, Method: testTarget.Method, Path: testTarget.Path, Query: testTarget.Query}
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
		"no id":            sign(jwt.SigningMethodHS256, claims(func(c *Claims) { c.ID = "" }), testKey),
		"long-lived":       sign(jwt.SigningMethodHS256, claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Minute)) }), testKey),
		// Made for another replica, method, path or query.
		"other replica": retarget(func(tg *Target) { tg.Replica = "http://attacker.example:8155" }),
		"other method":  retarget(func(tg *Target) { tg.Method = "DELETE" }),
		"other path":    retarget(func(tg *Target) { tg.Path = "/agents/prod/api/v1/secrets" }),
		"other query":   retarget(func(tg *Target) { tg.Query = "limit=500" }),
	}
	if _, err := s.Verify(sign(jwt.SigningMethodHS256, claims(func(*Claims) {}), testKey), testTarget); err != nil {
		t.Fatalf("the control token does not verify: %v", err)
	}
	for name, tok := range cases {
		_, err := s.AuthenticateRequest(request(testTarget), tok)
		if !errors.Is(err, kasproxy.ErrUnauthenticated) || !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: err %v, want ErrUnauthenticated and ErrBadToken", name, err)
		}
	}
}

// A token is good once, at the replica it names, and only once that
// replica knows its own URL; the token-only interface refuses it.
func TestTokenReplay(t *testing.T) {
	s, _ := NewSecret(testKey)
	tok, _ := s.Sign(kasproxy.User{Name: "alice"}, "prod", testTarget)
	if _, err := s.AuthenticateRequest(request(testTarget), tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("before SetSelf: %v, want ErrBadToken", err)
	}
	s.SetSelf(selfURL)
	if _, err := s.AuthenticateRequest(request(testTarget), tok); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, err := s.AuthenticateRequest(request(testTarget), tok); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "already used") {
		t.Errorf("replay: %v, want already used", err)
	}
	tok, _ = s.Sign(kasproxy.User{Name: "alice"}, "prod", testTarget)
	if _, err := s.AuthenticateUser(context.Background(), tok); !errors.Is(err, kasproxy.ErrUnauthenticated) {
		t.Errorf("AuthenticateUser: %v, want ErrUnauthenticated", err)
	}
	// The used-token memory forgets expired tokens.
	now := time.Now()
	s.now = func() time.Time { return now }
	for range 2000 {
		tok, _ := s.Sign(kasproxy.User{Name: "alice"}, "prod", testTarget)
		if _, err := s.AuthenticateRequest(request(testTarget), tok); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(TokenLifetime + 2*TokenLeeway)
	s.use("x", now)
	s.mu.Lock()
	n := len(s.used)
	s.mu.Unlock()
	if n > 1024 {
		t.Errorf("%d used tokens remembered after they expired", n)
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
	good, _ := s.Sign(kasproxy.User{Name: "alice", Groups: []string{"g"}}, "prod", testTarget)
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok, testTarget)
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

// A token made for a request verifies at the peer after a real HTTP hop,
// whatever the path and query hold.
func TestTokenSurvivesHTTP(t *testing.T) {
	s, _ := NewSecret(testKey)
	var got []error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := s.AuthenticateRequest(r, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		got = append(got, err)
	}))
	defer srv.Close()
	s.SetSelf(srv.URL)
	for _, p := range []struct{ path, query string }{
		{"/agents/prod/api/v1/namespaces/a b/pods", "labelSelector=app%3Dx%2Cb+c&limit=5"},
		{"/agents/prod/apis/x.io/v1/ünïcode;@:=", "fieldSelector=metadata.name%3D%C3%BC"},
		{"/agents/prod/api/v1/pods/p/log", "follow=true&container=a&since=1h%20"},
	} {
		u, _ := url.Parse(srv.URL)
		u.Path, u.RawQuery = p.path, p.query
		req, _ := http.NewRequest("GET", u.String(), nil)
		req.URL = u
		tok, _ := s.Sign(kasproxy.User{Name: "alice"}, "prod", TargetOf(srv.URL, req))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(got) != 3 {
		t.Fatalf("%d requests reached the peer, want 3", len(got))
	}
	for i, err := range got {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
}
