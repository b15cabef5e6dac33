package gitlabaccess_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"k8s.io/client-go/transport"

	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/gitlabaccess"
)

// job builds allowed_agents's answer as GitLab sends it.
func job(t *testing.T, body string) (*gitlab.AllowedAgentsForJob, *gitlab.AllowedAgent) {
	t.Helper()
	j, err := gitlab.ParseAllowedAgents([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return j, &j.AllowedAgents[0]
}

func TestJobIdentity(t *testing.T) {
	// The example of upstream's doc/kubernetes_ci_access.md: a job in
	// group1/group1-1/project1 (groups 23 and 25, project 150) in
	// environment prod of tier production.
	const withEnv = `{"allowed_agents":[{"id":4,"config_project":{"id":"9"},"configuration":{"default_namespace":"ns","access_as":%s}}],
		"job":{"id":1074499489},"pipeline":{"id":"600"},"project":{"id":150,"groups":[{"id":23},{"id":25}]},
		"user":{"id":2,"username":"ash2k"},"environment":{"slug":"prod","tier":"production"}}`
	const noEnv = `{"allowed_agents":[{"id":4,"config_project":{"id":9},"configuration":{"access_as":%s}}],
		"job":{"id":77},"pipeline":{"id":600},"project":{"id":150,"groups":[{"id":23}]},"user":{"id":2,"username":"ash2k"}}`
	ciJobExtra := func(jobID string) []gitlabaccess.Extra {
		return []gitlabaccess.Extra{
			{Key: "agent.gitlab.com/id", Values: []string{"4"}},
			{Key: "agent.gitlab.com/config_project_id", Values: []string{"9"}},
			{Key: "agent.gitlab.com/project_id", Values: []string{"150"}},
			{Key: "agent.gitlab.com/ci_pipeline_id", Values: []string{"600"}},
			{Key: "agent.gitlab.com/ci_job_id", Values: []string{jobID}},
			{Key: "agent.gitlab.com/username", Values: []string{"ash2k"}},
		}
	}
	for _, tc := range []struct {
		name, body, accessAs string
		want                 *gitlabaccess.Identity
		err                  error
	}{
		{"absent is agent", noEnv, `null`, nil, nil},
		{"empty is agent", noEnv, `{}`, nil, nil},
		{"agent", noEnv, `{"agent":{}}`, nil, nil},
		{"ci_job in an environment", withEnv, `{"ci_job":{}}`, &gitlabaccess.Identity{
			User: "gitlab:ci_job:1074499489",
			Groups: []string{"gitlab:ci_job", "gitlab:group:23", "gitlab:group_env_tier:23:production", "gitlab:group:25", "gitlab:group_env_tier:25:production",
				"gitlab:project:150", "gitlab:project_env:150:prod", "gitlab:project_env_tier:150:production"},
			Extra: append(ciJobExtra("1074499489"),
				gitlabaccess.Extra{Key: "agent.gitlab.com/environment_slug", Values: []string{"prod"}},
				gitlabaccess.Extra{Key: "agent.gitlab.com/environment_tier", Values: []string{"production"}}),
		}, nil},
		{"ci_job without environment", noEnv, `{"ci_job":{}}`, &gitlabaccess.Identity{
			User:   "gitlab:ci_job:77",
			Groups: []string{"gitlab:ci_job", "gitlab:group:23", "gitlab:project:150"},
			Extra:  ciJobExtra("77"),
		}, nil},
		{"impersonate", noEnv, `{"impersonate":{"username":"deployer","uid":"u-1","groups":["ops","dev"],"extra":[{"key":"team","val":["a","b"]}]}}`, &gitlabaccess.Identity{
			User: "deployer", UID: "u-1", Groups: []string{"ops", "dev"},
			Extra: []gitlabaccess.Extra{{Key: "team", Values: []string{"a", "b"}}},
		}, nil},
		{"impersonate with a repeated extra key", noEnv, `{"impersonate":{"username":"d","extra":[{"key":"k","val":["1"]},{"key":"j","val":["2"]},{"key":"k","val":["3"]}]}}`, &gitlabaccess.Identity{
			User: "d", Extra: []gitlabaccess.Extra{{Key: "k", Values: []string{"3"}}, {Key: "j", Values: []string{"2"}}},
		}, nil},
		{"impersonate with a control character", noEnv, `{"impersonate":{"username":"d\r\nImpersonate-Group: system:masters"}}`, nil, gitlabaccess.ErrAccessAs},
		{"impersonate without username", noEnv, `{"impersonate":{"groups":["ops"]}}`, nil, gitlabaccess.ErrAccessAs},
		{"ci_user", noEnv, `{"ci_user":{}}`, nil, gitlabaccess.ErrAccessAs},
		{"two modes", noEnv, `{"agent":{},"ci_job":{}}`, nil, gitlabaccess.ErrAccessAs},
		{"not an object", noEnv, `"ci_job"`, nil, gitlabaccess.ErrAccessAs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, a := job(t, strings.Replace(tc.body, "%s", tc.accessAs, 1))
			got, err := gitlabaccess.JobIdentity(j, a)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("identity\n got %+v\nwant %+v", got, tc.want)
			}
			if err != nil && gitlabaccess.StatusCode(err) != http.StatusInternalServerError {
				t.Fatalf("StatusCode = %d", gitlabaccess.StatusCode(err))
			}
		})
	}
}

func TestUserIdentity(t *testing.T) {
	parse := func(body string) *gitlab.AuthorizeProxyUserResponse {
		var r gitlab.AuthorizeProxyUserResponse
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	asUser := parse(`{"agent":{"id":4,"config_project":{"id":9}},"user":{"id":2,"username":"alice"},
		"access_as":{"user":{"projects":[{"id":150,"roles":["reporter","developer"]}],"groups":[{"id":23,"roles":["maintainer"]},{"id":25,"roles":[]}]}}}`)
	got, err := gitlabaccess.UserIdentity(asUser, gitlab.AccessTypePersonalAccessToken)
	if err != nil {
		t.Fatal(err)
	}
	want := &gitlabaccess.Identity{
		User:   "gitlab:user:alice",
		Groups: []string{"gitlab:user", "gitlab:project_role:150:reporter", "gitlab:project_role:150:developer", "gitlab:group_role:23:maintainer"},
		Extra: []gitlabaccess.Extra{
			{Key: "agent.gitlab.com/id", Values: []string{"4"}},
			{Key: "agent.gitlab.com/username", Values: []string{"alice"}},
			{Key: "agent.gitlab.com/access_type", Values: []string{"personal_access_token"}},
			{Key: "agent.gitlab.com/config_project_id", Values: []string{"9"}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("identity\n got %+v\nwant %+v", got, want)
	}
	asAgent := parse(`{"agent":{"id":4,"config_project":{"id":9}},"user":{"id":2,"username":"alice"},"access_as":{"agent":{}}}`)
	if got, err := gitlabaccess.UserIdentity(asAgent, gitlab.AccessTypeSessionCookie); got != nil || err != nil {
		t.Fatalf("access_as agent: %+v, %v; want nil, nil", got, err)
	}
	neither := parse(`{"agent":{"id":4,"config_project":{"id":9}},"user":{"id":2,"username":"alice"},"access_as":{}}`)
	if _, err := gitlabaccess.UserIdentity(neither, gitlab.AccessTypeSessionCookie); !errors.Is(err, gitlabaccess.ErrAccessAs) {
		t.Fatalf("no access_as: %v", err)
	}
}

// SetImpersonationHeaders writes what client-go's impersonating transport
// writes for the same identity (upstream agentk impersonates through it),
// and replaces whatever Impersonate-* headers were there.
func TestSetImpersonationHeaders(t *testing.T) {
	id := &gitlabaccess.Identity{
		User: "gitlab:ci_job:7", UID: "u-1",
		Groups: []string{"gitlab:ci_job", "gitlab:project:150"},
		Extra: []gitlabaccess.Extra{
			{Key: "agent.gitlab.com/id", Values: []string{"4"}},
			{Key: "odd key%é", Values: []string{"x", "y"}},
		},
	}
	var fromClientGo http.Header
	rt := transport.NewImpersonatingRoundTripper(transport.ImpersonationConfig{
		UserName: id.User, UID: id.UID, Groups: id.Groups, Extra: id.ExtraMap(),
	}, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		fromClientGo = r.Header
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	}))
	req, _ := http.NewRequest(http.MethodGet, "https://example.invalid/", nil)
	if _, err := rt.RoundTrip(req); err != nil {
		t.Fatal(err)
	}

	h := http.Header{"Accept": {"application/json"}, "Impersonate-User": {"root"}, "impersonate-group": {"system:masters"}, "Impersonate-Extra-Scopes": {"x"}}
	id.SetImpersonationHeaders(h)
	delete(h, "Accept")
	if !reflect.DeepEqual(h, fromClientGo) {
		t.Fatalf("headers\n got %v\nwant %v (client-go)", h, fromClientGo)
	}
	if got := h.Get("Impersonate-Extra-agent.gitlab.com%2Fid"); got != "4" {
		t.Fatalf("extra header: %v", h)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
