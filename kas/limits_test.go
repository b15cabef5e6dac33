package kas

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	tu "kubetunnel/internal/testutil"
)

// Idle keep-alive connections are closed after limits.idle_timeout, and
// a connection that sends no request after limits.read_header_timeout.
func TestIdleConnectionsClosed(t *testing.T) {
	e := newEnv(t, "ws")
	e.cfg.Limits.IdleTimeout = 300 * time.Millisecond
	e.cfg.Limits.ReadHeaderTimeout = 300 * time.Millisecond
	e.start()
	for _, name := range []string{"agent", "kubernetes_api", "observability"} {
		addr := e.kas.Addr(name).String()
		silent := tu.DialFrom(t, "127.0.0.1", addr, 1)[0]
		kept := tu.DialFrom(t, "127.0.0.1", addr, 1)[0]
		// One request, answered, then nothing: a keep-alive connection.
		io.WriteString(kept, "GET /healthz HTTP/1.1\r\nHost: kas\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(kept), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.Close {
			t.Fatalf("%s closed the connection after one request", name)
		}
		start := time.Now()
		if n := tu.CountOpen([]net.Conn{silent, kept}, 3*time.Second); n != 0 {
			t.Errorf("%s: %d idle connections still open after 3s, want them closed after 300ms", name, n)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: closing took %v", name, d)
		}
	}
}
