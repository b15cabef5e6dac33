package gitlabaccess_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"kubetunnel/internal/gitlabaccess"
)

func TestCORS(t *testing.T) {
	c, err := gitlabaccess.NewCORS("https://gitlab.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(method, origin string, hdr http.Header) (*httptest.ResponseRecorder, bool) {
		r := httptest.NewRequest(method, "/api/v1/pods", nil)
		for k, v := range hdr {
			r.Header[k] = v
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		done := c.Handle(w, r)
		return w, done
	}

	// Preflight from GitLab's UI.
	w, done := serve(http.MethodOptions, "https://gitlab.example.com", http.Header{
		"Access-Control-Request-Method":  {"GET"},
		"Access-Control-Request-Headers": {"gitlab-agent-id,x-csrf-token"},
	})
	h := w.Result().Header
	if !done || w.Code != 200 || h.Get("Access-Control-Allow-Origin") != "https://gitlab.example.com" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Allow-Headers") != "gitlab-agent-id,x-csrf-token" ||
		h.Get("Access-Control-Allow-Methods") == "" || !slices.Contains(h.Values("Vary"), "Origin") {
		t.Fatalf("preflight: done=%v %d %v", done, w.Code, h)
	}

	// The real request from GitLab's UI: headers set, the caller serves it.
	w, done = serve(http.MethodGet, "https://gitlab.example.com", nil)
	h = w.Result().Header
	if done || h.Get("Access-Control-Allow-Origin") != "https://gitlab.example.com" || h.Get("Access-Control-Allow-Credentials") != "true" ||
		h.Get("Access-Control-Allow-Methods") != "" {
		t.Fatalf("simple request: done=%v %v", done, h)
	}

	// Any other origin: refused, and never echoed.
	for _, o := range []string{"https://evil.example", "https://gitlab.example.com.evil.example", "http://gitlab.example.com", "null"} {
		for _, m := range []string{http.MethodOptions, http.MethodGet} {
			w, done = serve(m, o, http.Header{"Access-Control-Request-Method": {"GET"}})
			if !done || w.Code != http.StatusForbidden || w.Result().Header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("%s from %s: done=%v %d %v", m, o, done, w.Code, w.Result().Header)
			}
		}
	}

	// No Origin (kubectl): passes through with Vary only.
	w, done = serve(http.MethodGet, "", nil)
	if done || w.Result().Header.Get("Access-Control-Allow-Origin") != "" || w.Result().Header.Get("Vary") != "Origin" {
		t.Fatalf("no origin: done=%v %v", done, w.Result().Header)
	}
}

func TestNewCORSRefuses(t *testing.T) {
	for _, s := range []string{"gitlab.example.com", "ftp://gitlab.example.com", "https://", "https://u:p@gitlab.example.com", "%zz"} {
		if _, err := gitlabaccess.NewCORS(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestStripClusterCORS(t *testing.T) {
	h := http.Header{
		"Access-Control-Allow-Origin": {"*"}, "access-control-allow-credentials": {"true"}, "Access-Control-Expose-Headers": {"x"},
		"Content-Type": {"application/json"}, "Vary": {"Accept-Encoding"},
	}
	gitlabaccess.StripClusterCORS(h)
	if len(h) != 2 || h.Get("Content-Type") == "" || h.Get("Vary") == "" {
		t.Fatalf("left %v", h)
	}
}
