package gitlabaccess_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"kubetunnel/internal/gitlabaccess"
)

func TestParseCredential(t *testing.T) {
	type hdr = map[string][]string
	cookie := func(v string) []string { return []string{gitlabaccess.CookieName + "=" + v} }
	for _, tc := range []struct {
		name   string
		header hdr
		query  string
		want   gitlabaccess.Credential
		err    error // nil, ErrNotGitLab or ErrMalformed
	}{
		{"nothing", hdr{}, "", gitlabaccess.Credential{}, gitlabaccess.ErrNotGitLab},
		{"static bearer token", hdr{"Authorization": {"Bearer s3cret"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrNotGitLab},
		{"basic auth", hdr{"Authorization": {"Basic dXNlcjpwdw=="}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrNotGitLab},
		{"ci job token", hdr{"Authorization": {"Bearer ci:42:glcbt-abc"}}, "",
			gitlabaccess.Credential{Kind: gitlabaccess.KindCIJob, AgentID: 42, Token: "glcbt-abc"}, nil},
		{"lower-case bearer", hdr{"Authorization": {"bearer ci:42:glcbt-abc"}}, "",
			gitlabaccess.Credential{Kind: gitlabaccess.KindCIJob, AgentID: 42, Token: "glcbt-abc"}, nil},
		{"token with colons", hdr{"Authorization": {"Bearer ci:42:a:b:c"}}, "",
			gitlabaccess.Credential{Kind: gitlabaccess.KindCIJob, AgentID: 42, Token: "a:b:c"}, nil},
		{"pat", hdr{"Authorization": {"Bearer pat:7:glpat-xyz"}}, "",
			gitlabaccess.Credential{Kind: gitlabaccess.KindPAT, AgentID: 7, Token: "glpat-xyz"}, nil},
		{"ci without token", hdr{"Authorization": {"Bearer ci:42"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"ci with empty token", hdr{"Authorization": {"Bearer ci:42:"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"ci with bad agent id", hdr{"Authorization": {"Bearer ci:x:tok"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"ci with signed agent id", hdr{"Authorization": {"Bearer ci:+4:tok"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"ci with zero agent id", hdr{"Authorization": {"Bearer ci:0:tok"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"ci with overflowing agent id", hdr{"Authorization": {"Bearer ci:9223372036854775808:tok"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"pat with space in token", hdr{"Authorization": {"Bearer pat:7:glpat xyz"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"oversized token", hdr{"Authorization": {"Bearer pat:7:" + strings.Repeat("a", 5000)}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"two authorization headers", hdr{"Authorization": {"Bearer ci:1:a", "Bearer static"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		// A static token decides even with a stray GitLab cookie beside it.
		{"static token and cookie", hdr{"Authorization": {"Bearer s3cret"}, "Cookie": cookie("v"), "Gitlab-Agent-Id": {"1"}, "X-Csrf-Token": {"c"}}, "",
			gitlabaccess.Credential{}, gitlabaccess.ErrNotGitLab},
		// As upstream, a GitLab Authorization header wins over a cookie.
		{"pat and cookie", hdr{"Authorization": {"Bearer pat:7:glpat-xyz"}, "Cookie": cookie("v")}, "",
			gitlabaccess.Credential{Kind: gitlabaccess.KindPAT, AgentID: 7, Token: "glpat-xyz"}, nil},
		{"cookie with headers", hdr{"Cookie": cookie("abc%2B%2F%3D"), "Gitlab-Agent-Id": {"3"}, "X-Csrf-Token": {"csrf=="}}, "",
			gitlabaccess.Credential{Kind: gitlabaccess.KindSessionCookie, AgentID: 3, Token: "abc+/=", CSRFToken: "csrf=="}, nil},
		{"cookie among others", hdr{"Cookie": {"a=b; " + gitlabaccess.CookieName + "=v; c=d"}, "Gitlab-Agent-Id": {"3"}, "X-Csrf-Token": {"t"}}, "",
			gitlabaccess.Credential{Kind: gitlabaccess.KindSessionCookie, AgentID: 3, Token: "v", CSRFToken: "t"}, nil},
		{"cookie with query params", hdr{"Cookie": cookie("v")}, "watch=1&gitlab-agent-id=5&gitlab-csrf-token=t%2B",
			gitlabaccess.Credential{Kind: gitlabaccess.KindSessionCookie, AgentID: 5, Token: "v", CSRFToken: "t+"}, nil},
		// Header first, as upstream: the query parameter is then ignored.
		{"header before query", hdr{"Cookie": cookie("v"), "Gitlab-Agent-Id": {"3"}, "X-Csrf-Token": {"h"}}, "gitlab-agent-id=5&gitlab-csrf-token=q",
			gitlabaccess.Credential{Kind: gitlabaccess.KindSessionCookie, AgentID: 3, Token: "v", CSRFToken: "h"}, nil},
		{"cookie without agent id", hdr{"Cookie": cookie("v"), "X-Csrf-Token": {"t"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"cookie without csrf", hdr{"Cookie": cookie("v"), "Gitlab-Agent-Id": {"3"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"cookie with empty csrf", hdr{"Cookie": cookie("v"), "Gitlab-Agent-Id": {"3"}, "X-Csrf-Token": {""}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"cookie with two agent ids", hdr{"Cookie": cookie("v"), "Gitlab-Agent-Id": {"3", "4"}, "X-Csrf-Token": {"t"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"cookie with two query agent ids", hdr{"Cookie": cookie("v"), "X-Csrf-Token": {"t"}}, "gitlab-agent-id=3&gitlab-agent-id=4", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"empty cookie", hdr{"Cookie": cookie(""), "Gitlab-Agent-Id": {"3"}, "X-Csrf-Token": {"t"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"badly escaped cookie", hdr{"Cookie": cookie("%zz"), "Gitlab-Agent-Id": {"3"}, "X-Csrf-Token": {"t"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"two gitlab cookies", hdr{"Cookie": {gitlabaccess.CookieName + "=a; " + gitlabaccess.CookieName + "=b"}, "Gitlab-Agent-Id": {"3"}, "X-Csrf-Token": {"t"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrMalformed},
		{"other cookies only", hdr{"Cookie": {"_gitlab_session=x"}}, "", gitlabaccess.Credential{}, gitlabaccess.ErrNotGitLab},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/v1/pods?"+tc.query, nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			got, err := gitlabaccess.ParseCredential(r)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if got != tc.want {
					t.Fatalf("got %#v %q/%q, want %#v %q/%q", got, got.Token, got.CSRFToken, tc.want, tc.want.Token, tc.want.CSRFToken)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if gitlabaccess.StatusCode(err) != map[error]int{gitlabaccess.ErrNotGitLab: 0, gitlabaccess.ErrMalformed: 401}[tc.err] {
				t.Fatalf("StatusCode(%v) = %d", err, gitlabaccess.StatusCode(err))
			}
		})
	}
}

// A header whose name is in an unusual letter case (possible with HTTP/2
// or a hand-built request) is still seen.
func TestParseCredentialHeaderCase(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header["authorization"] = []string{"Bearer ci:9:tok"}
	c, err := gitlabaccess.ParseCredential(r)
	if err != nil || c.Kind != gitlabaccess.KindCIJob || c.AgentID != 9 {
		t.Fatalf("got %v, %v", c, err)
	}
}

func TestCredentialNeverPrintsSecrets(t *testing.T) {
	c := gitlabaccess.Credential{Kind: gitlabaccess.KindSessionCookie, AgentID: 3, Token: "sekrit-cookie", CSRFToken: "sekrit-csrf"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%s", c)} {
		if strings.Contains(s, "sekrit") {
			t.Fatalf("printed %q", s)
		}
	}
	if got := fmt.Sprint(c); got != "cookie credential for agent 3" {
		t.Fatalf("String() = %q", got)
	}
}

// FuzzParseCredential: any request either has no GitLab credential, a
// malformed one, or a well-formed one, never a panic.
func FuzzParseCredential(f *testing.F) {
	f.Add("Bearer ci:42:glcbt-abc", "", "", "", "")
	f.Add("Bearer pat:7:glpat", "", "", "", "")
	f.Add("", gitlabaccess.CookieName+"=abc%2B", "3", "csrf", "")
	f.Add("", gitlabaccess.CookieName+"=abc", "", "", "gitlab-agent-id=5&gitlab-csrf-token=x")
	f.Add("Bearer ci:", "", "", "", "")
	f.Add("bearer pat:1:", "a=b; _gitlab_kas=", "-1", "", "%zz")
	f.Fuzz(func(t *testing.T, auth, cookie, agentID, csrf, query string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/", RawQuery: query}, Header: http.Header{}}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		if agentID != "" {
			r.Header.Set(gitlabaccess.HeaderAgentID, agentID)
		}
		if csrf != "" {
			r.Header.Set(gitlabaccess.HeaderCSRFToken, csrf)
		}
		c, err := gitlabaccess.ParseCredential(r)
		checkParsed(t, c, err)
	})
}

// FuzzParseAuthorization fuzzes one Authorization value alone.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"Bearer ci:42:tok", "Bearer pat:1:a:b", "Bearer ci:", "Bearer ci:1", "BEARER pat:99999999999999999999:x", "Basic x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := gitlabaccess.ParseAuthorization(v)
		checkParsed(t, c, err)
		if err == nil && c.Kind == gitlabaccess.KindSessionCookie {
			t.Fatal("Authorization parsed as a cookie")
		}
	})
}

// FuzzParseAgentID: an accepted id is positive and prints back as given.
func FuzzParseAgentID(f *testing.F) {
	for _, s := range []string{"1", "0", "-1", "+1", "007", "9223372036854775807", "9223372036854775808", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := gitlabaccess.ParseAgentID(s)
		if err != nil {
			if !errors.Is(err, gitlabaccess.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if id <= 0 || strings.TrimLeft(s, "0") != fmt.Sprint(id) {
			t.Fatalf("%q parsed as %d", s, id)
		}
	})
}

func checkParsed(t *testing.T, c gitlabaccess.Credential, err error) {
	t.Helper()
	if err != nil {
		if errors.Is(err, gitlabaccess.ErrNotGitLab) == errors.Is(err, gitlabaccess.ErrMalformed) {
			t.Fatalf("error %v is not exactly one of ErrNotGitLab, ErrMalformed", err)
		}
		if c != (gitlabaccess.Credential{}) {
			t.Fatalf("error %v with a credential", err)
		}
		return
	}
	if c.AgentID <= 0 || c.Token == "" || len(c.Token) > 4096 {
		t.Fatalf("accepted %v with token length %d", c, len(c.Token))
	}
	for _, s := range []string{c.Token, c.CSRFToken} {
		if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Fatalf("accepted a token with a space or control byte: %q", s)
		}
	}
	switch c.Kind {
	case gitlabaccess.KindCIJob, gitlabaccess.KindPAT:
		if c.CSRFToken != "" {
			t.Fatal("a bearer credential with a CSRF token")
		}
	case gitlabaccess.KindSessionCookie:
		if c.CSRFToken == "" {
			t.Fatal("a cookie credential without a CSRF token")
		}
	default:
		t.Fatalf("kind %d", c.Kind)
	}
	if c.Kind.String() == "unknown" {
		t.Fatal("kind has no name")
	}
}

// Errors go to logs and to the caller: none may carry a token.
func TestErrorsCarryNoSecret(t *testing.T) {
	const secret = "SECRETSECRET"
	for _, h := range []http.Header{
		{"Authorization": {"Bearer ci:" + secret + ":x"}},
		{"Authorization": {"Bearer ci:" + secret}},
		{"Authorization": {"Bearer pat:1:" + secret + " x"}},
		{"Authorization": {"Bearer pat:1:" + secret, "Bearer pat:2:" + secret}},
		{"Cookie": {gitlabaccess.CookieName + "=" + secret}, "Gitlab-Agent-Id": {secret}, "X-Csrf-Token": {secret}},
		{"Cookie": {gitlabaccess.CookieName + "=" + secret + "%zz"}, "Gitlab-Agent-Id": {"1"}, "X-Csrf-Token": {secret}},
		{"Cookie": {gitlabaccess.CookieName + "=" + secret}, "Gitlab-Agent-Id": {"1"}, "X-Csrf-Token": {secret + "\x01"}},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header = h
		_, err := gitlabaccess.ParseCredential(r)
		if err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("%v: error %v", h, err)
		}
	}
}
