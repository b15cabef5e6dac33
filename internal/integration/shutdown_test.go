package integration

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	tu "kubetunnel/internal/testutil"
)

// With listen_grace_period a stopping kas fails /readyz at once and keeps
// serving new connections, through to the agent, until the period is over:
// a load balancer or Service takes it out of rotation before anything is
// refused. Then it shuts down as before.
func TestListenGracePeriod(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a listen grace period: not in -short")
	}
	const grace = 2 * time.Second
	e := newEnv(t, "ws")
	e.cfg.Agent.Listen.ListenGracePeriod = grace
	e.start()
	a := e.startAgent(nil)
	tu.Eventually(t, 10*time.Second, "agent config", func() bool { c, _ := a.Config(); return c != "" })
	// Every request on a new connection, as a load balancer's would be.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url, token string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := fresh.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	readyz, pods := e.obsURL()+"/readyz", e.proxyURL()+"/api/v1/pods?limit=1"
	if code, body, err := get(readyz, ""); code != http.StatusOK {
		t.Fatalf("/readyz before the stop: %d %q %v", code, body, err)
	}

	start := time.Now()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.stop()
	}()
	tu.Eventually(t, time.Second, "/readyz failing once kas is stopping", func() bool {
		code, body, _ := get(readyz, "")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "stopping")
	})
	if code, body, err := get(pods, aliceToken); code != http.StatusOK {
		t.Errorf("a request on a new connection during the grace period: %d %q %v", code, body, err)
	}
	if elapsed := time.Since(start); elapsed >= grace {
		t.Fatalf("the checks took %v, longer than listen_grace_period (%v): the test cannot tell", elapsed, grace)
	}

	select {
	case <-stopped:
	case <-time.After(grace + 15*time.Second):
		t.Fatal("kas did not stop")
	}
	if elapsed := time.Since(start); elapsed < grace {
		t.Errorf("kas stopped %v after the signal, before listen_grace_period (%v) was over", elapsed, grace)
	}
	if c, err := net.DialTimeout("tcp", e.cfg.Agent.KubernetesAPI.Listen.Address, time.Second); err == nil {
		c.Close()
		t.Error("the Kubernetes API listener still accepts connections after kas stopped")
	}
}
