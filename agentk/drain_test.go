package agentk

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"kubetunnel/agentk/agentktest"
	"kubetunnel/api/rpc"
	"kubetunnel/internal/testutil"
)

// proxied is the outcome of a request kas sent to the agent.
type proxied struct {
	code int
	body string
	err  error
}

// sendHeld sends GET /api/v1/held on the session of kas's latest connection and
// returns once the API server has it; the answer arrives on the channel
// after api.releaseHeld.
func sendHeld(t *testing.T, kas *agentktest.Kas, api *fakeAPI) <-chan proxied {
	t.Helper()
	sess := kas.Session(10 * time.Second)
	out := make(chan proxied, 1)
	go func() {
		// Not kas.Do: it ends the test on error, which only the test's
		// goroutine may do.
		var p proxied
		defer func() { out <- p }()
		conn, err := sess.Open()
		if err != nil {
			p.err = err
			return
		}
		defer conn.Close()
		req := agentktest.ProxyRequest(http.MethodGet, "/api/v1/held", "alice")
		if p.err = req.Write(conn); p.err != nil {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			p.err = err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		p.code, p.body, p.err = resp.StatusCode, string(b), err
	}()
	select {
	case <-api.held:
	case p := <-out:
		t.Fatalf("the request was answered without reaching the API server: %d %s %v", p.code, p.body, p.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the API server")
	}
	return out
}

func answer(t *testing.T, ch <-chan proxied, what string) proxied {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer to %s", what)
		return proxied{}
	}
}

// kas's GoAway (it is rotating or stopping): agentk dials a new connection
// at once, and the old one keeps serving what is in flight on it, and new
// requests, until kas closes it.
func TestGoAwayDrainsTheOldConnection(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	api := newFakeAPI(t)
	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c1", AgentName: agentktest.AgentName, ConfigJson: configJSON(t, "")})
	a := startAgent(t, kas, api, nil)
	testutil.Eventually(t, 10*time.Second, "commit c1", func() bool { c, _ := a.Config(); return c == "c1" })
	old := kas.Session(10 * time.Second)
	inflight := sendHeld(t, kas, api)

	req, _ := http.NewRequest(http.MethodPost, "http://agentk/-/tunnel/goaway", nil)
	if resp, _ := kas.Do(old, req); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("goaway: %d, want 204", resp.StatusCode)
	}
	testutil.Eventually(t, 10*time.Second, "a second connection beside the old one", func() bool { return kas.Sessions() == 2 })
	if resp, body := kas.Do(old, agentktest.ProxyRequest(http.MethodGet, "/api/v1/pods", "alice")); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"path":"/api/v1/pods"`) {
		t.Errorf("a new request on the old connection after GoAway: %d %s", resp.StatusCode, body)
	}
	api.releaseHeld()
	if p := answer(t, inflight, "the request in flight at GoAway"); p.err != nil || p.code != http.StatusOK || !strings.Contains(p.body, `"path":"/api/v1/held"`) {
		t.Errorf("the request in flight at GoAway: %d %s %v", p.code, p.body, p.err)
	}
	if n := len(kas.Hellos()); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}

// agentk stopping (SIGTERM in a rolling update) tells kas to open no more
// streams on its connection, lets the request in flight finish, and only
// then returns.
func TestStopDrainsRequestsInFlight(t *testing.T) {
	kas := agentktest.NewKas(t, agentToken)
	api := newFakeAPI(t)
	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c1", AgentName: agentktest.AgentName, ConfigJson: configJSON(t, "")})
	a := startAgent(t, kas, api, func(o *Options) { o.DrainTimeout = time.Minute })
	testutil.Eventually(t, 10*time.Second, "commit c1", func() bool { c, _ := a.Config(); return c == "c1" })
	sess := kas.Session(10 * time.Second)
	inflight := sendHeld(t, kas, api)

	stopped := make(chan error, 1)
	go func() { stopped <- a.stop() }()
	testutil.Eventually(t, 10*time.Second, "kas to be refused new streams", func() bool {
		c, err := sess.Open()
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("agentk returned (%v) with a request in flight", err)
	default:
	}
	api.releaseHeld()
	if p := answer(t, inflight, "the request in flight at stop"); p.err != nil || p.code != http.StatusOK || !strings.Contains(p.body, `"path":"/api/v1/held"`) {
		t.Errorf("the request in flight at stop: %d %s %v", p.code, p.body, p.err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agentk did not return after its last request")
	}
}
