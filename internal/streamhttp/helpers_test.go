package streamhttp

import (
	"io"
	"net/http"
	"testing"
	"time"

	tu "kubetunnel/internal/testutil"
)

// echoUpgrade answers "Upgrade: echo" with 101 and then echoes what it
// reads, as an exec or port-forward backend would splice.
func echoUpgrade(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "echo" {
		http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	brw.Flush()
	io.Copy(c, brw)
}

// upgrade sends an "Upgrade: echo" request with tr and returns the
// upgraded stream, which must be the response body.
func upgrade(t *testing.T, tr http.RoundTripper, url string) io.ReadWriteCloser {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("a 101 body is %T, not an io.ReadWriteCloser (ReverseProxy needs one to splice)", resp.Body)
	}
	return rwc
}

// checkEcho writes msg and expects it back.
func checkEcho(t *testing.T, rwc io.ReadWriter, msg string) {
	t.Helper()
	if _, err := io.WriteString(rwc, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(rwc, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: %q, %v, want %q", buf, err, msg)
	}
}

// waitPooledClosedByPeer waits until the far end's close of the stream
// last put in tr's pool has reached it, as RoundTrip checks before it
// reuses a stream.
func waitPooledClosedByPeer(t *testing.T, tr *Transport) {
	t.Helper()
	tu.Eventually(t, 5*time.Second, "the far end's close to reach the pooled stream", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.idle) > 0 && closedByPeer(tr.idle[len(tr.idle)-1])
	})
}
