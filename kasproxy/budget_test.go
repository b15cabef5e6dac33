package kasproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	tu "kubetunnel/internal/testutil"
)

// endlessTunnel answers every request with an endless body, as a large
// list or a log stream would, and counts the bodies still open (a body
// open is a tunnel stream, and its window, held in kas).
type endlessTunnel struct{ open, started atomic.Int64 }

type endlessBody struct {
	t    *endlessTunnel
	once sync.Once
}

func (b *endlessBody) Read(p []byte) (int, error) { clear(p); return len(p), nil }
func (b *endlessBody) Close() error {
	b.once.Do(func() { b.t.open.Add(-1) })
	return nil
}

func (t *endlessTunnel) RoundTripper(string) (http.RoundTripper, error) {
	return RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
		t.open.Add(1)
		t.started.Add(1)
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			ContentLength: -1, Body: &endlessBody{t: t}, Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
	}), nil
}

// A caller that stops reading large responses cannot hold more than its
// budget: past it, its stalled responses end at once and their streams
// are released; the write timeout ends the rest; another caller is served
// meanwhile.
func TestStalledResponsesBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("stalls responses for seconds: not in -short")
	}
	tun := &endlessTunnel{}
	m := NewMetrics(prometheus.NewRegistry())
	p := New(Config{Users: fakeUsers{}, Tunnels: tun, Metrics: m, StreamWindow: 1 << 20, MaxBufferedBytesPerUser: 3 << 20, MaxBufferedBytes: 5 << 20,
		StallAfter: 100 * time.Millisecond, WriteTimeout: 3 * time.Second})
	srv := httptest.NewServer(p)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	// mallory opens 10 endless responses and reads nothing.
	var conns []net.Conn
	for range 10 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /agents/prod/api/v1/pods HTTP/1.1\r\nHost: kas\r\nAuthorization: Bearer mallory-token\r\n\r\n")
		conns = append(conns, c)
	}
	tu.Eventually(t, 10*time.Second, "mallory's 10 responses to start", func() bool { return tun.started.Load() == 10 })
	// Within a second or so, all but her budget's worth (3) are ended.
	tu.EventuallyNoError(t, 10*time.Second, "mallory's stalled responses past her budget to end", func() error {
		if n := tun.open.Load(); n > 3 {
			return fmt.Errorf("%d still hold their streams, want at most 3 (3 MiB budget, 1 MiB window)", n)
		}
		return nil
	})
	if used := p.budget.Used(); used > 3<<20 {
		t.Errorf("budget used %d, want at most 3 MiB", used)
	}
	if n := testutil.ToFloat64(m.StalledEnded); n < 7 {
		t.Errorf("kas_proxy_stalled_responses_ended_total %v, want at least 7", n)
	}
	// alice reads a response while mallory holds hers.
	ac, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	fmt.Fprintf(ac, "GET /agents/prod/api/v1/pods HTTP/1.1\r\nHost: kas\r\nAuthorization: Bearer alice-token\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(ac), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("alice: %v %v", err, resp)
	}
	if n, err := io.CopyN(io.Discard, resp.Body, 8<<20); err != nil || n != 8<<20 {
		t.Errorf("alice read %d bytes: %v", n, err)
	}
	ac.Close()
	// The write timeout ends the rest: nothing is held after it.
	tu.EventuallyNoError(t, 10*time.Second, "the write timeout to end the other stalled responses", func() error {
		if n := tun.open.Load(); n != 0 {
			return fmt.Errorf("%d streams still held", n)
		}
		return nil
	})
	if used := p.budget.Used(); used != 0 || testutil.ToFloat64(m.StalledBytes) != 0 {
		t.Errorf("budget used %d (gauge %v) after every response ended", used, testutil.ToFloat64(m.StalledBytes))
	}
}

// A kept-alive connection idle for longer than the write timeout still
// carries the next response, a refusal included (net/http clears a
// response's write deadline once it is sent).
func TestWriteDeadlineDoesNotOutliveItsResponse(t *testing.T) {
	p := New(Config{Users: fakeUsers{}, Tunnels: &recordingTunnel{}, WriteTimeout: 200 * time.Millisecond})
	srv := httptest.NewServer(p)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, token := range []string{"alice-token", "alice-token", "guess"} {
		if i > 0 {
			// Not a wait: the connection idles past the write timeout,
			// a deadline on the socket that only real time reaches.
			time.Sleep(400 * time.Millisecond)
		}
		fmt.Fprintf(c, "GET /agents/prod/api HTTP/1.1\r\nHost: kas\r\nAuthorization: Bearer %s\r\n\r\n", token)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the kept-alive connection: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
