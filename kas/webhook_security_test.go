package kas

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// startStalledWebhook sends a webhook's headers with a 1 MiB
// Content-Length and a few bytes of body, then stalls; it returns the
// connection and a reader for the answer.
func startStalledWebhook(t *testing.T, addr string, hdr map[string]string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /api/v1/webhooks/git HTTP/1.1\r\nHost: kas\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", 1<<20)
	for k, v := range hdr {
		fmt.Fprintf(c, "%s: %s\r\n", k, v)
	}
	io.WriteString(c, "\r\n{\"ref\":")
	return c, bufio.NewReader(c)
}

// A webhook with a wrong or missing GitLab token is refused on its
// headers, before kas reads (or waits for) its body; GitHub bodies, which
// must be read to check their signature, are bounded in number and in
// time. Legitimate webhooks are served meanwhile.
func TestWebhookStalledBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the webhook's read timeout: not in -short")
	}
	e, repo := newWebhookEnv(t)
	repo.commit("first", manifestTree)
	e.cfg.Limits.ObservabilityReadTimeout = 2 * time.Second
	e.start()
	addr := e.kas.Addr("observability").String()

	for _, hdr := range []map[string]string{{"X-Gitlab-Token": "wrong"}, {}} {
		c, br := startStalledWebhook(t, addr, hdr)
		c.SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("headers %v: no answer before the body: %v", hdr, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("headers %v: %d, want 401", hdr, resp.StatusCode)
		}
	}

	// 40 stalled GitHub bodies: 32 are read (until the read timeout), the
	// others get 503 at once.
	type stalled struct {
		c  net.Conn
		br *bufio.Reader
	}
	var gh []stalled
	for range 40 {
		c, br := startStalledWebhook(t, addr, map[string]string{"X-Hub-Signature-256": "sha256=00", "X-GitHub-Event": "push"})
		gh = append(gh, stalled{c, br})
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for _, s := range gh {
		wg.Go(func() {
			s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			code := 0 // closed without an answer: the read timeout
			if resp, err := http.ReadResponse(s.br, nil); err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	// Meanwhile a GitLab webhook is served.
	code, out := e.postWebhook(gitlabPush(repo.url, "group/manifests"), map[string]string{"X-Gitlab-Token": webhookSecret, "X-Gitlab-Event": "Push Hook"})
	if code != http.StatusAccepted && code != http.StatusOK {
		t.Errorf("GitLab webhook during the stall: %d %v", code, out)
	}
	wg.Wait()
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("stalled bodies held for %v, want about the 2s read timeout", d)
	}
	if codes[http.StatusServiceUnavailable] < 8 || codes[http.StatusServiceUnavailable]+codes[0]+codes[http.StatusBadRequest] != 40 {
		t.Errorf("answers to stalled GitHub webhooks: %v, want at least 8 503s and the rest cut at the read timeout", codes)
	}
	body := githubPush(repo.url, "group/manifests")
	code, out = e.postWebhook(body, map[string]string{"X-Hub-Signature-256": githubSignature(webhookSecret, body), "X-GitHub-Event": "push"})
	if code != http.StatusAccepted && code != http.StatusOK {
		t.Errorf("GitHub webhook after the stall: %d %v", code, out)
	}
}
