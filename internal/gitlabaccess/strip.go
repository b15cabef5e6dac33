package gitlabaccess

import (
	"net/http"
	"net/url"
	"strings"
)

// CredentialHeaders are the request headers that carry GitLab
// credentials; none may reach the cluster (upstream removes the same in
// pipeStreams, kubernetes_api/server/proxy.go).
var CredentialHeaders = []string{"Authorization", "Cookie", HeaderAgentID, HeaderCSRFToken}

// CredentialQueryParams are the query parameter forms of Gitlab-Agent-Id
// and X-Csrf-Token.
var CredentialQueryParams = []string{QueryAgentID, QueryCSRFToken}

// StripCredentials removes GitLab's credentials from r before it is
// forwarded: CredentialHeaders in any letter case, and
// CredentialQueryParams (also in any letter case, and however
// percent-escaped) from the query. The rest of the query is kept byte for
// byte, in order: re-encoding it could change what the API server sees.
// Impersonate-* and Kas-* headers are kubehttp.StripCallerHeaders' job.
func StripCredentials(r *http.Request) {
	for k := range r.Header {
		for _, c := range CredentialHeaders {
			if strings.EqualFold(k, c) {
				delete(r.Header, k)
			}
		}
	}
	if r.URL != nil && r.URL.RawQuery != "" {
		r.URL.RawQuery = StripQuery(r.URL.RawQuery)
		r.URL.ForceQuery = false
	}
}

// StripQuery returns rawQuery without the pairs whose key is one of
// CredentialQueryParams. A pair whose key cannot be unescaped is kept:
// Go's url.ParseQuery (which the API server uses) skips it too.
func StripQuery(rawQuery string) string {
	pairs := strings.Split(rawQuery, "&")
	kept := pairs[:0]
	for _, pair := range pairs {
		key, _, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(key); err == nil && isCredentialParam(k) {
			continue
		}
		kept = append(kept, pair)
	}
	return strings.Join(kept, "&")
}

func isCredentialParam(k string) bool {
	for _, p := range CredentialQueryParams {
		if strings.EqualFold(k, p) {
			return true
		}
	}
	return false
}
