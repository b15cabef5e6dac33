package agentk

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"kubetunnel/agentk/agentktest"
	"kubetunnel/api/rpc"
	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/internal/testutil"
	"kubetunnel/tunnel"
)

// A GitLab caller's request: agentk impersonates the identity kas sent,
// even where user_access would act as the agent; "agent" acts as the
// agent even where user_access would impersonate; a value that does not
// decode is 400.
func TestGitLabIdentity(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	api := newFakeAPI(t)
	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c1", AgentName: agentktest.AgentName, ConfigJson: configJSON(t, "user_access:\n  access_as: {user: {}}\n")})
	a := startAgent(t, kas, api, nil)
	sess := kas.Session(10 * time.Second)
	testutil.Eventually(t, 10*time.Second, "commit c1", func() bool { c, _ := a.Config(); return c == "c1" })

	id := &gitlabaccess.Identity{User: "gitlab:ci_job:42", Groups: []string{"gitlab:ci_job"}}
	for _, c := range []struct {
		header, want string
		code         int
	}{
		{id.HeaderValue(), `"impersonate_user":"gitlab:ci_job:42"`, 200},
		{tunnel.GitLabIdentityAgent, `"impersonate_user":""`, 200},
		{"not base64 json!", "identity header", 400},
	} {
		req := agentktest.ProxyRequest(http.MethodGet, "/api/v1/pods", "gitlab:ci_job:42")
		req.Header.Set(tunnel.HeaderGitLabIdentity, c.header)
		resp, body := kas.Do(sess, req)
		if resp.StatusCode != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %q: %d %s, want %d with %s", tunnel.HeaderGitLabIdentity, c.header, resp.StatusCode, body, c.code, c.want)
		}
	}
}
