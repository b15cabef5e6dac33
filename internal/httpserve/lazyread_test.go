package httpserve

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"kubetunnel/internal/testpki"
)

// lazyServer serves h on loopback through LazyClientWatch and returns
// its address and the connections it wrapped.
func lazyServer(t *testing.T, h http.HandlerFunc) (string, func() []*lazyConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []*lazyConn
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if lc, ok := c.(*lazyConn); ok && s == http.StateNew {
			mu.Lock()
			conns = append(conns, lc)
			mu.Unlock()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeServer(ctx, LazyClientWatch(srv, ln), srv, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), func() []*lazyConn {
		mu.Lock()
		defer mu.Unlock()
		return append([]*lazyConn(nil), conns...)
	}
}

// exchange writes raw to c and reads n responses.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, raw string, n int) []string {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", len(bodies)+1, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, fmt.Sprintf("%d %s", resp.StatusCode, b))
	}
	return bodies
}

// What the lazy read rests on: net/http's background read is the one
// read of one byte after each request's head, and skipping it loses
// nothing. If a Go release changes that, skipped stops matching here
// (and kas only loses the saving: every other read passes through).
func TestLazyReadTakesNetHTTPsBackgroundRead(t *testing.T) {
	addr, conns := lazyServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("body: %v", err)
		}
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(b))
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	var want []string
	for i := range 5 {
		got := exchange(t, c, br, fmt.Sprintf("GET /get%d HTTP/1.1\r\nHost: x\r\n\r\n", i), 1)
		want = append(want, fmt.Sprintf("200 GET /get%d 0", i))
		if got[0] != want[i] {
			t.Fatalf("GET %d: %q, want %q", i, got[0], want[i])
		}
	}
	if n := conns()[0].skipped.Load(); n != 5 {
		t.Fatalf("%d background reads taken for 5 GETs, want 5", n)
	}
	// Bodies: small (read with the head), large (several reads, one of
	// which may fill the last byte of net/http's buffer), chunked; then
	// two requests in one write. All on the same connection.
	big := strings.Repeat("x", 1<<20)
	raw := "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big +
		"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n" +
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
	got := exchange(t, c, br, raw, 5)
	want = []string{"200 POST /small 3", "200 POST /big 1048576", "200 POST /chunked 7", "200 GET /a 0", "200 GET /b 0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Heads around the size of net/http's 4 KiB buffer, each chunked
	// body in a later read: whatever the sizes of the reads after a head,
	// the body arrives whole.
	for pad := 4000; pad < 4100; pad++ {
		raw := "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Pad: " + strings.Repeat("p", pad) + "\r\n\r\n"
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // the body in a later read
		got := exchange(t, c, br, "5\r\nhello\r\n0\r\n\r\n", 1)
		if got[0] != "200 POST /p 5" {
			t.Fatalf("pad %d: %q", pad, got[0])
		}
	}
}

// A handler that starts a watch learns that its client left: the
// request's context is canceled.
func TestWatchClientCancelsWhenTheClientLeaves(t *testing.T) {
	canceled := make(chan time.Duration, 1)
	addr, _ := lazyServer(t, func(w http.ResponseWriter, r *http.Request) {
		r, cw := WatchClient(r)
		defer cw.Stop()
		if cw == nil {
			t.Error("no client watch on a plain connection")
			return
		}
		cw.Start()
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		start := time.Now()
		select {
		case <-r.Context().Done():
			canceled <- time.Since(start)
		case <-time.After(10 * time.Second):
			canceled <- -1
		}
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /watch HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if d := <-canceled; d < 0 || d > 2*time.Second {
		t.Fatalf("the handler's context was canceled after %v, want within 2s of the client leaving", d)
	}
}

// A watch that ends leaves the connection to net/http: the next request
// is served, also when the client had already sent it (the watch read
// its first byte).
func TestWatchClientLeavesTheConnectionWhole(t *testing.T) {
	addr, conns := lazyServer(t, func(w http.ResponseWriter, r *http.Request) {
		r, cw := WatchClient(r)
		defer cw.Stop()
		cw.Start()
		cw.Start() // a second Start does nothing
		time.Sleep(20 * time.Millisecond)
		if r.Context().Err() != nil {
			t.Errorf("%s: context canceled with the client still there", r.URL.Path)
		}
		fmt.Fprint(w, r.URL.Path)
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 3 {
		got := exchange(t, c, br, fmt.Sprintf("GET /seq%d HTTP/1.1\r\nHost: x\r\n\r\n", i), 1)
		if got[0] != fmt.Sprintf("200 /seq%d", i) {
			t.Fatalf("request %d: %q", i, got[0])
		}
	}
	got := exchange(t, c, br, "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /p3 HTTP/1.1\r\nHost: x\r\n\r\n", 3)
	if fmt.Sprint(got) != "[200 /p1 200 /p2 200 /p3]" {
		t.Fatalf("pipelined: %q", got)
	}
	if n := len(conns()); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// An upgrade hijacks a wrapped connection and speaks over it.
func TestLazyConnHijacked(t *testing.T) {
	addr, _ := lazyServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		b := make([]byte, 1) // one byte at a time: not taken for net/http's
		for {
			n, err := brw.Read(b)
			if err != nil {
				return
			}
			c.Write(b[:n])
		}
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("%v %v", resp, err)
	}
	for _, s := range []string{"a", "bc", "def"} {
		io.WriteString(c, s)
		got := make([]byte, len(s))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != s {
			t.Fatalf("echo %q: %q %v", s, got, err)
		}
	}
}

// On TLS net/http keeps its own watch (kas puts LazyClientWatch over
// its TLS listener): WatchClient is a no-op and a client that leaves
// still cancels the context.
func TestLazyClientWatchLeavesTLSAlone(t *testing.T) {
	certFile, keyFile, _ := testpki.MustIssue(t, "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	canceled := make(chan bool, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2, cw := WatchClient(r)
		if cw != nil || r2 != r || r.TLS == nil {
			t.Errorf("TLS request: watch %v, same request %v, TLS %v", cw, r2 == r, r.TLS != nil)
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			canceled <- true
		case <-time.After(10 * time.Second):
			canceled <- false
		}
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeServer(ctx, LazyClientWatch(srv, ln), srv, time.Second) }()
	defer func() { cancel(); <-done }()
	c, err := tls.Dial("tcp", raw.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !<-canceled {
		t.Fatal("the TLS client left and the context was not canceled")
	}
}
