package gitlab

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestJWT(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	now := time.Unix(1_700_000_000, 0)
	tok := SignJWT(key, IssuerKas, AudienceGitLab, now)
	if err := VerifyJWT(key, tok, IssuerKas, AudienceGitLab, now); err != nil {
		t.Fatalf("own token: %v", err)
	}
	// A verifier with a clock a few seconds off still accepts it.
	if err := VerifyJWT(key, tok, IssuerKas, AudienceGitLab, now.Add(-3*time.Second)); err != nil {
		t.Fatalf("clock skew: %v", err)
	}
	hdr, _, _ := strings.Cut(tok, ".")
	for name, c := range map[string]struct {
		key      []byte
		tok      string
		iss, aud string
		now      time.Time
	}{
		"wrong key":      {key: []byte(strings.Repeat("x", 32)), tok: tok, iss: IssuerKas, aud: AudienceGitLab, now: now},
		"wrong audience": {key: key, tok: tok, iss: IssuerKas, aud: AudienceKas, now: now},
		"wrong issuer":   {key: key, tok: tok, iss: IssuerGitLab, aud: AudienceGitLab, now: now},
		"expired":        {key: key, tok: tok, iss: IssuerKas, aud: AudienceGitLab, now: now.Add(jwtLifetime + jwtLeeway)},
		"not yet valid":  {key: key, tok: tok, iss: IssuerKas, aud: AudienceGitLab, now: now.Add(-time.Minute)},
		"no exp":         {key: key, tok: signClaims(key, Claims{Issuer: IssuerKas, Audience: AudienceGitLab}), iss: IssuerKas, aud: AudienceGitLab, now: now},
		"alg none":       {key: key, tok: noneToken(tok), iss: IssuerKas, aud: AudienceGitLab, now: now},
		"tampered":       {key: key, tok: hdr + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"gitlab-kas","aud":"gitlab","exp":9999999999}`)) + "." + strings.Split(tok, ".")[2], iss: IssuerKas, aud: AudienceGitLab, now: now},
		"garbage":        {key: key, tok: "a.b", iss: IssuerKas, aud: AudienceGitLab, now: now},
		"too long":       {key: key, tok: strings.Repeat("a", maxJWTLen+1), iss: IssuerKas, aud: AudienceGitLab, now: now},
	} {
		t.Run(name, func(t *testing.T) {
			err := VerifyJWT(c.key, c.tok, c.iss, c.aud, c.now)
			if !errors.Is(err, ErrInvalidJWT) {
				t.Fatalf("VerifyJWT = %v, want ErrInvalidJWT", err)
			}
		})
	}
}

// noneToken re-signs tok's claims with alg "none" and no signature.
func noneToken(tok string) string {
	parts := strings.Split(tok, ".")
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
}

func TestJWTAudienceList(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	now := time.Now()
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	p := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"gitlab","aud":["other","gitlab-kas"],"exp":` + itoa(now.Add(time.Minute).Unix()) + `}`))
	tok := h + "." + p + "." + base64.RawURLEncoding.EncodeToString(mac(key, h+"."+p))
	if err := VerifyJWT(key, tok, IssuerGitLab, AudienceKas, now); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestDecodeSecret(t *testing.T) {
	good := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("s", 32)))
	if k, err := DecodeSecret([]byte(good + "\n")); err != nil || len(k) != 32 {
		t.Fatalf("DecodeSecret(good) = %d bytes, %v", len(k), err)
	}
	if _, err := DecodeSecret([]byte("not base64!")); err == nil {
		t.Fatal("not base64 accepted")
	}
	if _, err := DecodeSecret([]byte(base64.StdEncoding.EncodeToString([]byte("short")))); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short secret: %v", err)
	}
}
