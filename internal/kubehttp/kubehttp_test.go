package kubehttp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// client-go (and so kubectl) shows our message both for discovery, which
// kubectl does first, and for ordinary requests.
func TestClientGoShowsOurMessage(t *testing.T) {
	const msg = `agent "x" is not connected to kas`
	for _, code := range []int{http.StatusForbidden, http.StatusServiceUnavailable} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			WriteStatus(w, r, code, msg)
		}))
		var warnings []string
		cs := kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL + "/agents/x", WarningHandler: warningFunc(func(m string) { warnings = append(warnings, m) })})
		_, err := cs.Discovery().ServerGroups()
		if err == nil || !strings.Contains(err.Error(), msg) && !(len(warnings) == 1 && strings.Contains(warnings[0], `agent 'x' is not connected to kas`)) {
			t.Errorf("%d: discovery error %v and warnings %q, want our message in one", code, err, warnings)
		}
		if _, err := cs.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%d: list error %v, want our message", code, err)
		}
		srv.Close()
	}
}

type warningFunc func(string)

func (f warningFunc) HandleWarningHeader(code int, agent, text string) { f(text) }

func TestStripCallerHeaders(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{"Authorization", "Impersonate-User", "Impersonate-Group", "Impersonate-Extra-Scopes", "Kas-Proxy-User", "Cookie", "Accept", "Content-Type"} {
		h.Set(k, "v")
	}
	h["impersonate-uid"] = []string{"lowercase key set directly"}
	// Keys http.CanonicalHeaderKey leaves as they are (a byte outside the
	// token alphabet); found by FuzzStripCallerHeaders.
	h["kAs- "] = []string{"x"}
	h["iMPERSONATE-user x"] = []string{"x"}
	h["authorization\t"] = []string{"kept: not the Authorization header"}
	// Front-proxy identity headers (an API server with --requestheader-*
	// takes the caller's identity from them) and impersonation spelled
	// with underscores, which nginx, CGI and some gateways read as dashes.
	for _, k := range []string{"X-Remote-User", "X-Remote-Group", "X-Remote-Extra-Scopes", "x_remote_user", "Impersonate_User", "IMPERSONATE_GROUP", "Kas_Proxy_User"} {
		h[k] = []string{"admin"}
	}
	StripCallerHeaders(h)
	if len(h) != 3 || h.Get("Accept") == "" || h.Get("Content-Type") == "" {
		t.Errorf("left %v", h)
	}
}

// FuzzStripCallerHeaders: whatever a caller sends, no credential or
// identity header survives.
func FuzzStripCallerHeaders(f *testing.F) {
	f.Add("Impersonate-User", "admin")
	f.Add("iMPERSONATE-group", "system:masters")
	f.Add("kas-proxy-user", "root")
	f.Add("Impersonate_User", "admin")
	f.Add("X-Remote-Extra-Scopes", "x")
	f.Add("x_REMOTE_group", "system:masters")
	f.Fuzz(func(t *testing.T, key, value string) {
		h := http.Header{}
		h[key] = []string{value}
		h.Add(key, value)
		StripCallerHeaders(h)
		for k := range h {
			// What any server or proxy on the way could take the key for:
			// letter case ignored, "_" read as "-".
			ck := strings.ReplaceAll(strings.ToLower(k), "_", "-")
			if ck == "authorization" || ck == "proxy-authorization" || ck == "cookie" ||
				strings.HasPrefix(ck, "impersonate-") || strings.HasPrefix(ck, "kas-") || strings.HasPrefix(ck, "x-remote-") {
				t.Fatalf("%q survived", k)
			}
		}
		if ImpersonationHeader(h) != "" {
			t.Fatal("ImpersonationHeader finds what Strip left")
		}
	})
}
