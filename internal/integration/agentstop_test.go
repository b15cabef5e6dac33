package integration

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/agentk"
	tu "kubetunnel/internal/testutil"
)

// An agentk replica that stops (a rolling update) loses no request: the
// request in flight on it finishes, its watch ends cleanly, and requests
// sent meanwhile go to the other replica. Then it exits.
func TestAgentStopDrains(t *testing.T) {
	e := newEnv(t, "ws")
	e.api.slow, e.api.slowEntered = make(chan struct{}), make(chan string, 10)
	release := sync.OnceFunc(func() { close(e.api.slow) })
	e.start()
	t.Cleanup(release) // before kas and the API server stop, even on failure
	// Replicas tell themselves apart by the credential they present.
	replica := func(token string) *runningAgent {
		return e.startAgent(func(o *agentk.Options) {
			o.REST = &rest.Config{Host: e.api.URL, BearerToken: token}
			o.DrainTimeout = 10 * time.Second
		})
	}
	a := replica(saToken + "-a")
	e.waitConnected(1)
	tu.Eventually(t, 10*time.Second, "agent config", func() bool { c, _ := a.Config(); return c != "" })

	// On replica a, alone: a request the API server holds, and a watch.
	slow := make(chan int, 1)
	go func() {
		code, _ := e.call("GET", "/slow", aliceToken, nil, nil)
		slow <- code
	}()
	if got := <-e.api.slowEntered; got != "Bearer "+saToken+"-a" {
		t.Fatalf("the slow request reached the API server as %q", got)
	}
	req, _ := http.NewRequest("GET", e.proxyURL()+"/watch/pods?watch=true", nil)
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	watch, err := http.DefaultClient.Do(req)
	if err != nil || watch.StatusCode != http.StatusOK {
		t.Fatalf("watch: %v %v", err, watch)
	}
	defer watch.Body.Close()
	watchEnd := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(watch.Body)
		for sc.Scan() {
		}
		watchEnd <- sc.Err()
	}()

	b := replica(saToken + "-b")
	e.waitConnected(2)
	tu.Eventually(t, 10*time.Second, "replica b's config", func() bool { c, _ := b.Config(); return c != "" })

	// Stop a; keep sending requests, with and without a body, until it
	// has exited.
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.stop()
	}()
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer wg.Wait()
	defer cancel()
	for i := range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				method, path := "GET", "/api/v1/pods?limit=1"
				var body io.Reader
				if i%2 == 1 {
					method, path, body = "POST", "/api/v1/namespaces/default/configmaps", strings.NewReader(strings.Repeat("x", 2<<10))
				}
				sent.Add(1)
				if code, out := e.call(method, path, aliceToken, body, nil); code != http.StatusOK {
					failed.Add(1)
					t.Errorf("%s %s while replica a stops: %d %s", method, path, code, out)
				}
			}
		})
	}

	select {
	case err := <-watchEnd:
		if err != nil {
			t.Errorf("the watch on the stopping replica ended with %v, want a clean end", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the watch on the stopping replica did not end")
	}
	select {
	case <-stopped:
		t.Fatal("replica a exited with a request in flight")
	case <-time.After(300 * time.Millisecond):
	}
	release()
	released := time.Now()
	if code := <-slow; code != http.StatusOK {
		t.Errorf("the request in flight on the stopping replica: %d, want 200", code)
	}
	select {
	case <-stopped:
		t.Logf("replica a exited %v after its last request was answered", time.Since(released).Round(time.Millisecond))
	case <-time.After(8 * time.Second):
		t.Fatal("replica a still running 8s after its last request finished")
	}
	// Requests after a is gone: all to b.
	after := sent.Load()
	tu.Eventually(t, 10*time.Second, "requests after replica a is gone", func() bool { return sent.Load() >= after+20 })
	cancel()
	wg.Wait()
	t.Logf("%d requests while replica a stopped, %d failed", sent.Load(), failed.Load())
	if sent.Load() < 20 {
		t.Errorf("only %d requests while replica a stopped", sent.Load())
	}
	e.waitConnected(1)
}
