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

// A refused agent keeps dialling, with backoff: a handful of attempts a
// second at these settings (20 ms doubling to 200 ms, full jitter; about
// ten expected), not the thousands a loop without backoff makes on
// loopback.
func TestRefusedDialsBackOff(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	startAgent(t, kas, newFakeAPI(t), func(o *Options) {
		o.Token = "wrong-token"
		o.ReconnectInitial, o.ReconnectMax = 20*time.Millisecond, 200*time.Millisecond
	})
	testutil.Eventually(t, 10*time.Second, "a first refused dial", func() bool { return len(kas.Hellos()) > 0 })
	first := len(kas.Hellos())
	start := time.Now()
	testutil.Eventually(t, 10*time.Second, "three more dials", func() bool { return len(kas.Hellos()) >= first+3 })
	// Not a wait: the dials are counted over one second of real time, the
	// rate a user would see kas hammered at.
	time.Sleep(time.Second - time.Since(start))
	if n := len(kas.Hellos()) - first; n > 60 {
		t.Errorf("%d dials in %v after a refusal, want a backed-off handful", n, time.Since(start).Round(time.Millisecond))
	}
	if kas.Sessions() != 0 {
		t.Error("a session with a wrong token")
	}
}
