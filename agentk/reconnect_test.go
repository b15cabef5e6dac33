package agentk

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"kubetunnel/agentk/agentktest"
	"kubetunnel/api/rpc"
	"kubetunnel/internal/testutil"
)

// kas drops the connection (a crash, a network cut: no GoAway) three times
// in a row; each time agentk dials again and serves requests on the new
// connection, with the config it had.
func TestReconnectsAfterConnectionLoss(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	api := newFakeAPI(t)
	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c1", AgentName: agentktest.AgentName,
		ConfigJson: configJSON(t, "user_access:\n  access_as: {user: {}}\n")})
	a := startAgent(t, kas, api, nil)
	testutil.Eventually(t, 10*time.Second, "commit c1", func() bool { c, _ := a.Config(); return c == "c1" })

	for i := range 3 {
		kas.Session(10 * time.Second).Close()
		testutil.Eventually(t, 10*time.Second, "agentk to dial again", func() bool { return len(kas.Hellos()) == i+2 })
		testutil.Eventually(t, 10*time.Second, "the new connection", func() bool { return kas.Sessions() == 1 })
		resp, body := kas.Do(kas.Session(10*time.Second), agentktest.ProxyRequest(http.MethodGet, "/api/v1/pods", "alice"))
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"impersonate_user":"alice"`) {
			t.Fatalf("after drop %d: %d %s, want the request served with c1's access_as", i+1, resp.StatusCode, body)
		}
	}
	if c, _ := a.Config(); c != "c1" {
		t.Errorf("running %s after the reconnects, want c1", c)
	}
	testutil.Eventually(t, 10*time.Second, "readyz ok", func() bool { code, body := get(t, a.obs+"/readyz"); return code == http.StatusOK && body == "ok\n" })
}
