package streamhttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"
	"kubetunnel/tunnel/mux"

	"kubetunnel/internal/testpki"
	tu "kubetunnel/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// server is an httptest server (net/http, what agentk runs) with a
// Transport that dials it and counts the connections it accepted.
type server struct {
	*httptest.Server
	conns       atomic.Int64
	closedConns atomic.Int64
	tr          *Transport
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Add(1)
		case http.StateClosed:
			s.closedConns.Add(1)
		}
	}
	s.Start()
	s.tr = &Transport{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.Listener.Addr().String())
	}}
	t.Cleanup(func() {
		s.tr.CloseIdleConnections()
		s.Close()
	})
	return s
}

func (s *server) get(t *testing.T, ctx context.Context, path string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.tr.RoundTrip(req)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return string(b)
}

func TestTransportReusesOneStream(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	})
	for i := range 5 {
		resp, err := s.get(t, context.Background(), "/x")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := readAll(t, resp); got != "hello /x" {
			t.Fatalf("request %d: body %q", i, got)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("5 sequential requests used %d streams, want 1", n)
	}
	if n := s.tr.IdleConns(); n != 1 {
		t.Errorf("idle streams = %d, want 1", n)
	}
}

// A caller that reads exactly Content-Length bytes and closes without
// seeing EOF still gives the stream back.
func TestTransportReusesAfterExactRead(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	})
	for range 3 {
		resp, err := s.get(t, context.Background(), "/")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("used %d streams, want 1", n)
	}
}

// A response that ends after Close (a watch its server ended while the
// pool's far end went away) hands back a stream that Close closes rather
// than keeps idle.
func TestTransportCloseClosesStreamsHandedBackLater(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "end")
	})
	resp, err := s.get(t, context.Background(), "/watch")
	if err != nil {
		t.Fatal(err)
	}
	s.tr.Close()
	close(release)
	if got := readAll(t, resp); got != "end" {
		t.Fatalf("body %q", got)
	}
	if n := s.tr.IdleConns(); n != 0 {
		t.Errorf("after Close, a finished response left %d idle streams, want 0", n)
	}
	// The server sees the stream closed: its connection ends.
	tu.Eventually(t, 5*time.Second, "the server's connection to close", func() bool {
		return s.closedConns.Load() == 1
	})
}

// Closing a body before its end closes the stream: that is how a caller
// who went away cancels a watch at the far end.
func TestTransportEarlyCloseEndsTheRequest(t *testing.T) {
	ended := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(ended)
		for {
			if _, err := io.WriteString(w, "event\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	resp, err := s.get(t, context.Background(), "/watch")
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event\n" {
		t.Fatalf("first event: %q, %v", line, err)
	}
	resp.Body.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler still runs 5 s after the caller closed the body")
	}
	if n := s.tr.IdleConns(); n != 0 {
		t.Errorf("a stream closed mid-response went back to the pool (%d idle)", n)
	}
}

func TestTransportCancelWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	entered, sawCancel := make(chan struct{}), make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-r.Context().Done():
			close(sawCancel)
		case <-release:
		}
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.get(t, ctx, "/slow")
		errc <- err
	}()
	<-entered // the request waits for its answer
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("RoundTrip after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RoundTrip did not return after its context was cancelled")
	}
	select {
	case <-sawCancel:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not see the request cancelled")
	}
}

func TestTransportUpgrade(t *testing.T) {
	s := newServer(t, echoUpgrade)
	rwc := upgrade(t, s.tr, s.URL+"/exec")
	defer rwc.Close()
	checkEcho(t, rwc, "ping")
}

// 1xx answers before the final one reach the request's httptrace, which
// is how ReverseProxy relays them.
func TestTransportInformational(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "done")
	})
	var got []int
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, code)
			return nil
		},
	})
	resp, err := s.get(t, ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); resp.StatusCode != 200 || b != "done" {
		t.Fatalf("final response %d %q", resp.StatusCode, b)
	}
	if len(got) != 1 || got[0] != http.StatusEarlyHints {
		t.Errorf("1xx seen: %v, want [103]", got)
	}
}

// A server may answer before it reads the request body; the body goes
// out from its own goroutine, so that cannot deadlock.
func TestTransportEarlyAnswerToLargeBody(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	body := io.LimitReader(zeros{}, 64<<20)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/upload", body)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestTransportRequestBody(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, strings.ToUpper(string(b)))
	})
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/", strings.NewReader("abc"))
		resp, err := s.tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := readAll(t, resp); got != "ABC" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("3 requests with bodies used %d streams, want 1", n)
	}
}

// closingServer answers each request on a connection and then closes it
// without saying so (no "Connection: close"), as a far end that went
// away while the stream sat in the pool. conns counts the connections
// accepted, closed those closed.
func closingServer(t *testing.T) (addr string, conns, closed *atomic.Int64) {
	t.Helper()
	conns, closed = &atomic.Int64{}, &atomic.Int64{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEach(t, ln, func(c net.Conn) {
		conns.Add(1)
		defer func() {
			c.Close()
			closed.Add(1)
		}()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	return ln.Addr().String(), conns, closed
}

// serveEach runs handle on each connection ln accepts, on its own
// goroutine, until the test ends.
func serveEach(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { handle(c) })
		}
	})
}

// notSocket hides that a connection is a socket, so the pool cannot peek
// at it: the request path's rule for a connection found dead is tested.
type notSocket struct{ net.Conn }

func TestTransportRetriesAStaleStreamOnlyWhenSafe(t *testing.T) {
	addr, conns, closed := closingServer(t)
	tr := &Transport{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		return notSocket{c}, err
	}}
	defer tr.CloseIdleConnections()
	do := func(method string) (string, error) {
		req, _ := http.NewRequest(method, "http://agentk/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if _, err := do(http.MethodGet); err != nil {
		t.Fatal(err)
	}
	// On loopback the server's close has reached the client once its
	// Close returned.
	tu.Eventually(t, 5*time.Second, "the server to close the first stream", func() bool { return conns.Load() == 1 && closed.Load() == 1 })
	// The pooled stream is dead; a GET goes again on a new one.
	if got, err := do(http.MethodGet); err != nil || got != "ok" {
		t.Fatalf("GET on a stale stream: %q, %v (want a retry on a new stream)", got, err)
	}
	tu.Eventually(t, 5*time.Second, "the server to close the second stream", func() bool { return conns.Load() == 2 && closed.Load() == 2 })
	// A POST may have been acted on: no retry, an error.
	if _, err := do(http.MethodPost); err == nil {
		t.Fatal("POST on a stale stream succeeded; it must not be sent twice")
	}
}

func TestTransportPoolLimits(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	})
	clk := clocktesting.NewFakeClock(time.Now())
	s.tr.MaxIdle, s.tr.IdleTimeout, s.tr.now = 1, time.Minute, clk.Now
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			resp, err := s.get(t, context.Background(), "/")
			if err != nil {
				t.Error(err)
				return
			}
			readAll(t, resp)
		})
	}
	tu.Eventually(t, 5*time.Second, "3 streams", func() bool { return s.conns.Load() == 3 })
	close(release)
	wg.Wait()
	if n := s.tr.IdleConns(); n != 1 {
		t.Errorf("idle streams after 3 concurrent requests = %d, want MaxIdle 1", n)
	}
	get := func() {
		t.Helper()
		resp, err := s.get(t, context.Background(), "/")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	clk.Step(time.Minute - time.Nanosecond)
	get()
	if n := s.conns.Load(); n != 3 {
		t.Errorf("within IdleTimeout the request did not reuse the idle stream (%d streams, want 3)", n)
	}
	clk.Step(time.Minute)
	get()
	if n := s.conns.Load(); n != 4 {
		t.Errorf("after IdleTimeout the request used an old stream (%d streams, want 4)", n)
	}
}

// Over the real thing: yamux streams, served by net/http as agentk does.
func TestTransportOverYamux(t *testing.T) {
	a, b := net.Pipe()
	client, err := mux.Client(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	srvSess, err := mux.Server(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.URL.RequestURI())
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(srvSess)
	}()
	tr := &Transport{Dial: func(context.Context) (net.Conn, error) { return client.OpenStream() }}
	for _, path := range []string{"/api/v1/namespaces/default", "/api?x=1"} {
		req, _ := http.NewRequest(http.MethodGet, "http://agentk"+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "GET "+path {
			t.Errorf("got %q, want %q", got, "GET "+path)
		}
	}
	if n := client.NumStreams(); n != 1 {
		t.Errorf("open streams = %d, want 1 (reused)", n)
	}
	tr.CloseIdleConnections()
	tu.Eventually(t, 5*time.Second, "idle streams closed", func() bool { return client.NumStreams() == 0 })
	srv.Close()
	client.Close()
	srvSess.Close()
	<-done
}

// FuzzTransportResponse: whatever agentk (or anything on the stream)
// answers, RoundTrip returns, never panics, and only a response read to
// its end without error puts the stream back in the pool.
func FuzzTransportResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nraw",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil EOF",
		"garbage",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		client, server := net.Pipe()
		var wg sync.WaitGroup
		wg.Go(func() { io.Copy(io.Discard, server) })
		wg.Go(func() {
			server.Write(answer)
			server.Close()
		})
		dialed := false
		tr := &Transport{Dial: func(context.Context) (net.Conn, error) {
			if dialed {
				return nil, errors.New("one stream only")
			}
			dialed = true
			return client, nil
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agentk/", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, rerr := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if tr.IdleConns() > 0 && rerr != nil {
				t.Errorf("a stream whose body failed (%v) went back to the pool", rerr)
			}
		} else if tr.IdleConns() != 0 {
			t.Error("a failed exchange left its stream in the pool")
		}
		tr.CloseIdleConnections()
		client.Close()
		wg.Wait()
	})
}

// kas ends a watch by closing its body while another goroutine is blocked
// reading it: the read returns, the stream closes, nothing races.
func TestTransportCloseDuringRead(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	resp, err := s.get(t, context.Background(), "/watch")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first line: %q, %v", line, err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := br.ReadString('\n')
		readErr <- err
	}()
	tu.WaitBlocked(t, 5*time.Second, "the second read to block", "TestTransportCloseDuringRead", "ReadString")
	resp.Body.Close()
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("a read across Close returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked read did not return after Close")
	}
	if n := s.tr.IdleConns(); n != 0 {
		t.Errorf("%d idle streams after a Close mid-body, want 0", n)
	}
}

// A pooled stream the far end has closed since (agentk stopping closes its
// idle streams) is not used again: even a POST, which could not be sent a
// second time, goes out on a new stream.
func TestTransportSkipsAStreamTheFarEndClosed(t *testing.T) {
	client, srvSess := yamuxPair(t)
	var accepted atomic.Int64
	go func() {
		for {
			c, err := srvSess.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				// One answer that keeps the stream, then close it as if
				// idle: the client's pool still holds it.
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	tr := &Transport{Dial: func(context.Context) (net.Conn, error) { return client.OpenStream() }}
	defer tr.CloseIdleConnections()
	post := func() (string, error) {
		req, _ := http.NewRequest(http.MethodPost, "http://agentk/", strings.NewReader(`{"kind":"ConfigMap"}`))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for i := range 3 {
		if got, err := post(); err != nil || got != "ok" {
			t.Fatalf("POST %d: %q, %v", i+1, got, err)
		}
		waitPooledClosedByPeer(t, tr)
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d streams for 3 POSTs, want 3 (none reused after its close)", n)
	}
}

// A connection the server closed while it sat in the pool (an API
// server's or a load balancer's idle timeout) is not used again, on TCP
// and on TLS: a POST, which must not be sent twice, goes on a new one
// and succeeds.
func TestTransportSkipsASocketTheServerClosed(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "tls"}[useTLS], func(t *testing.T) {
			addr, conns, closed := closingServer(t)
			dial := func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			}
			if useTLS {
				addr = tlsFront(t, addr)
				dial = func(ctx context.Context) (net.Conn, error) {
					d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}}
					return d.DialContext(ctx, "tcp", addr)
				}
			}
			tr := &Transport{Dial: dial}
			defer tr.CloseIdleConnections()
			for i := range 3 {
				req, _ := http.NewRequest(http.MethodPost, "http://apiserver/", strings.NewReader(`{"kind":"ConfigMap"}`))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatalf("POST %d: %v", i+1, err)
				}
				if got := readAll(t, resp); got != "ok" {
					t.Fatalf("POST %d: %q", i+1, got)
				}
				want := int64(i + 1)
				tu.Eventually(t, 5*time.Second, "the server to close its connection", func() bool { return conns.Load() == want && closed.Load() == want })
				waitPooledClosedByPeer(t, tr)
			}
		})
	}
}

// tlsFront terminates TLS on a new loopback port and relays each
// connection to addr in plain TCP, closing the TLS side (close_notify,
// then FIN) when addr closes.
func tlsFront(t *testing.T, addr string) string {
	t.Helper()
	certFile, keyFile, _ := testpki.MustIssue(t, "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	serveEach(t, ln, func(c net.Conn) {
		defer c.Close()
		b, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer b.Close()
		go io.Copy(b, c)
		io.Copy(c, b)
	})
	return ln.Addr().String()
}
