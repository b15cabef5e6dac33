package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
	"kubetunnel/kas"
)

// With several replicas and Redis, the status of a replica the agent is
// not connected to says which replica holds it, on the page and in
// /api/v1/status; the replica it is connected to shows the connection.
func TestStatusAcrossReplicas(t *testing.T) {
	h := newHA(t, 2)
	r0, r1 := h.c.Replicas[0], h.c.Replicas[1]
	h.startAgent(r0.AgentAddress())
	status := func(srv *kas.Server) (kas.StatusReport, string) {
		obs := "http://" + srv.Addr("observability").String()
		var rep kas.StatusReport
		req, _ := http.NewRequest(http.MethodGet, obs+"/api/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+haAlice)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		req, _ = http.NewRequest(http.MethodGet, obs+"/", nil)
		req.Header.Set("Authorization", "Bearer "+haAlice)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return rep, string(page)
	}
	self0 := r0.Server().PrivateAPIURL()
	var rep kas.StatusReport
	var page string
	testutil.Eventually(t, 10*time.Second, "replica 1 to see the agent on replica 0", func() bool {
		rep, page = status(r1.Server())
		return len(rep.Agents) == 1 && slices.Contains(rep.Agents[0].Replicas, self0)
	})
	if a := rep.Agents[0]; a.Name != haAgent || len(a.Sessions) != 0 || rep.Replica != r1.Server().PrivateAPIURL() {
		t.Errorf("replica 1's status: %+v", rep)
	}
	if !strings.Contains(page, "connected to another kas replica") || !strings.Contains(page, self0) {
		t.Errorf("replica 1's page does not say where the agent is:\n%s", page)
	}
	rep, page = status(r0.Server())
	if len(rep.Agents) != 1 || len(rep.Agents[0].Sessions) != 1 || !strings.Contains(page, "connected</span> (1 connection)") {
		t.Errorf("replica 0's status: %+v\n%s", rep, page)
	}
	h.streamsClosed()
}
