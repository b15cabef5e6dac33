package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"kubetunnel/agentk"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/kas"
)

// Both tunnel protocols carry a user's requests the same way, through a
// real agentk: an agentk that offers only protocol 1 (as one from before
// protocol 2) gets it, a current one gets protocol 2. Identity and
// impersonation, caller-set identity headers dropped, request bodies of
// known and unknown length, a watch streamed event by event and cancelled
// at the API server when its caller leaves.
func TestProxyBothProtocols(t *testing.T) {
	for _, protocol := range []int{1, 2} {
		t.Run(fmt.Sprintf("protocol%d", protocol), func(t *testing.T) {
			e := newEnv(t, "ws")
			commit := e.repo.Commit("config", map[string]string{kas.AgentConfigPath(agentName): "user_access:\n  access_as:\n    user: {}\n"})
			e.start()
			a := e.startAgent(func(o *agentk.Options) { o.ProxyProtocol = protocol })
			tu.Eventually(t, 10*time.Second, "agent config", func() bool { c, _ := a.Config(); return c == commit })
			if got := e.kas.SessionProtocols(agentName); len(got) != 1 || got[0] != protocol {
				t.Fatalf("negotiated protocols %v, want [%d]", got, protocol)
			}

			seen := e.callSeen(aliceToken, map[string]string{"Kas-Proxy-User": "root", "Kas-Gitlab-Identity": "agent", "Cookie": "a=b"})
			if seen.Auth != "Bearer "+saToken || seen.ImpUser != "alice" || len(seen.ImpGroups) != 1 ||
				seen.ImpGroups[0] != "developers" || len(seen.KasHeaders) != 0 || seen.Query != "limit=1" {
				t.Errorf("API server saw %+v", seen)
			}

			body := bytes.Repeat([]byte("x"), 3<<20)
			for _, known := range []bool{true, false} {
				var r io.Reader = bytes.NewReader(body)
				if !known {
					r = io.MultiReader(r) // sent chunked: length unknown
				}
				code, b := e.call("POST", "/api/v1/namespaces/default/configmaps", aliceToken, r, nil)
				var got struct {
					BodyLen int `json:"body_len"`
				}
				json.Unmarshal(b, &got)
				if code != 200 || got.BodyLen != len(body) {
					t.Errorf("POST (length known: %v): %d, %d bytes arrived", known, code, got.BodyLen)
				}
			}

			watch := startWatch(t, e.proxyURL()+"/watch/pods?watch=true", aliceToken, 3)
			if n := e.api.watches.Load(); n != 1 {
				t.Errorf("%d watches at the API server, want 1", n)
			}
			watch.Close()
			tu.Eventually(t, 10*time.Second, "the API server's watch to end after its caller left", func() bool { return e.api.watches.Load() == 0 })
		})
	}
}
