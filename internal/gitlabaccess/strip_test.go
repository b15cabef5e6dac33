package gitlabaccess_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"kubetunnel/internal/gitlabaccess"
)

func TestStripCredentials(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/api/v1/namespaces/x/pods/p/exec?command=sh&gitlab-agent-id=3&stdin=true&gitlab-csrf-token=t&Gitlab-Csrf-Token=u&gitlab%2Dagent%2Did=4&container=c", nil)
	r.Header["Authorization"] = []string{"Bearer ci:1:tok"}
	r.Header["Cookie"] = []string{"_gitlab_kas=v"}
	r.Header["Gitlab-Agent-Id"] = []string{"3"}
	r.Header["X-Csrf-Token"] = []string{"t"}
	r.Header["x-csrf-token"] = []string{"t"} // a non-canonical key must go too
	r.Header["Accept"] = []string{"application/json"}
	r.Header["Upgrade"] = []string{"SPDY/3.1"}
	gitlabaccess.StripCredentials(r)

	var keys []string
	for k := range r.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"Accept", "Upgrade"}) {
		t.Fatalf("headers left: %v", keys)
	}
	// The rest of the query is kept as sent, in order.
	if want := "command=sh&stdin=true&container=c"; r.URL.RawQuery != want {
		t.Fatalf("query %q, want %q", r.URL.RawQuery, want)
	}
}

func TestStripQuery(t *testing.T) {
	for in, want := range map[string]string{
		"":                                     "",
		"watch=1":                              "watch=1",
		"gitlab-agent-id=1":                    "",
		"a=1&&b=%zz&gitlab-csrf-token":         "a=1&&b=%zz",
		"labelSelector=a%3Db&gitlab-agent-id":  "labelSelector=a%3Db",
		"gitlab+agent+id=1&gitlab-agent-id2=1": "gitlab+agent+id=1&gitlab-agent-id2=1",
		"%zz=1&gitlab-csrf-token=x&z=9":        "%zz=1&z=9",
	} {
		if got := gitlabaccess.StripQuery(in); got != want {
			t.Errorf("StripQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzStripQuery: what the API server would parse from the result has no
// credential parameter, and every other parameter keeps its values.
func FuzzStripQuery(f *testing.F) {
	for _, s := range []string{"a=1&gitlab-agent-id=2", "gitlab%2Dcsrf%2Dtoken=x", "GITLAB-AGENT-ID=1;x=2", "&&=&", "%zz&gitlab-csrf-token=%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out := gitlabaccess.StripQuery(q)
		parsed, _ := url.ParseQuery(out)
		for k := range parsed {
			for _, p := range gitlabaccess.CredentialQueryParams {
				if strings.EqualFold(k, p) {
					t.Fatalf("StripQuery(%q) = %q still has %q", q, out, k)
				}
			}
		}
		in, _ := url.ParseQuery(q)
		for k, v := range in {
			if strings.EqualFold(k, gitlabaccess.QueryAgentID) || strings.EqualFold(k, gitlabaccess.QueryCSRFToken) {
				continue
			}
			if !slices.Equal(parsed[k], v) {
				t.Fatalf("StripQuery(%q) = %q: %q is %q, was %q", q, out, k, parsed[k], v)
			}
		}
		if len(out) > len(q) {
			t.Fatalf("StripQuery(%q) = %q grew", q, out)
		}
	})
}
