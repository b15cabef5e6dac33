package gitlabaccess

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// HeaderUnauthorized is set (to "true") on kas's own 401 answers to
// GitLab callers, as upstream does, so GitLab's UI can tell GitLab's
// refusal from the cluster's.
const HeaderUnauthorized = "Gitlab-Unauthorized"

// corsMethods are the methods a preflight allows (upstream's list).
const corsMethods = "GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH"

// CORS lets GitLab's UI (gitlab.external_url), running in the browser,
// call the Kubernetes API listener with its session cookie, and no other
// origin. Upstream: kubernetesApiProxy.proxy in
// internal/module/kubernetes_api/server/proxy.go.
type CORS struct {
	origins map[string]bool // scheme://host[:port], lower case
}

// NewCORS allows the origins of these URLs (gitlab.external_url); a path
// or trailing slash is ignored, as the browser's Origin has none.
func NewCORS(urls ...string) (*CORS, error) {
	c := &CORS{origins: map[string]bool{}}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return nil, fmt.Errorf("CORS origin %q: expected an http(s) URL such as https://gitlab.example.com", s)
		}
		c.origins[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	return c, nil
}

// Handle adds CORS headers to w for r. It returns true when it has
// answered r itself: a preflight (200) or a request from an origin that
// is not allowed (403, as upstream). Otherwise the caller serves r, and
// the headers set here stay on the answer; the cluster's own CORS headers
// must then be dropped with StripClusterCORS.
func (c *CORS) Handle(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	// Every answer depends on Origin, with it or without: a cache must
	// not give one origin's answer to another.
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false // not a browser's cross-origin call
	}
	if !c.origins[strings.ToLower(origin)] {
		http.Error(w, fmt.Sprintf("origin %q may not call kas from a browser: only gitlab.external_url may", truncate(origin)), http.StatusForbidden)
		return true
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		if rh := r.Header.Values("Access-Control-Request-Headers"); len(rh) > 0 {
			h["Access-Control-Allow-Headers"] = rh
		}
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusOK)
		return true
	}
	return false
}

// StripClusterCORS removes CORS headers from the cluster's answer: kas
// decides who may call from a browser, not the API server (upstream:
// mergeProxiedResponseHeaders). Vary is left to merge with kas's.
func StripClusterCORS(h http.Header) {
	for k := range h {
		if len(k) >= len("Access-Control-") && strings.EqualFold(k[:len("Access-Control-")], "Access-Control-") {
			delete(h, k)
		}
	}
}
