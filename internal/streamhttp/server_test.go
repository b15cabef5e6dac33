package streamhttp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kubetunnel/tunnel/mux"

	tu "kubetunnel/internal/testutil"
)

// streamServer is a Server on a loopback listener, reached with net/http's
// own client (so a real parser checks the framing) or with Transport.
type streamServer struct {
	addr   string
	client *http.Client
	tr     *Transport
	conns  atomic.Int64
}

func newStreamServer(t *testing.T, h http.Handler) *streamServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &streamServer{addr: ln.Addr().String()}
	srv := &Server{Handler: h, WatchAfter: 5 * time.Millisecond, MaxHeaderBytes: 8 << 10,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			s.conns.Add(1)
			return ctx
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	ht := &http.Transport{}
	s.client = &http.Client{Transport: ht}
	s.tr = &Transport{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.addr)
	}}
	t.Cleanup(func() {
		ht.CloseIdleConnections()
		s.tr.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func (s *streamServer) url(path string) string { return "http://" + s.addr + path }

func TestServerFraming(t *testing.T) {
	s := newStreamServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "fixed")
		case "/chunked":
			io.WriteString(w, "one,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "two")
		case "/empty":
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Method", r.Method)
			w.Write(b)
		}
	}))
	cases := []struct {
		method, path, body string
		code               int
		want               string
		chunked            bool
	}{
		{"GET", "/length", "", 200, "fixed", false},
		{"GET", "/chunked", "", 200, "one,two", true},
		{"GET", "/empty", "", 200, "", false},
		{"GET", "/nocontent", "", 204, "", false},
		{"HEAD", "/length", "", 200, "", false},
		{"GET", "/trailer", "", 200, "body", true},
		{"POST", "/echo", strings.Repeat("x", 100000), 200, strings.Repeat("x", 100000), true},
		{"GET", "/length", "", 200, "fixed", false}, // after all that, the stream still works
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, s.url(c.path), strings.NewReader(c.body))
		if c.body == "" {
			req.Body = http.NoBody
		}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: body: %v", c.method, c.path, err)
		}
		if resp.StatusCode != c.code || string(b) != c.want {
			t.Errorf("%s %s: %d %.40q, want %d %.40q", c.method, c.path, resp.StatusCode, b, c.code, c.want)
		}
		if chunked := len(resp.TransferEncoding) > 0; chunked != c.chunked {
			t.Errorf("%s %s: chunked %v, want %v", c.method, c.path, chunked, c.chunked)
		}
		if c.path == "/trailer" && resp.Trailer.Get("X-Sum") != "42" {
			t.Errorf("trailer X-Sum = %q, want 42", resp.Trailer.Get("X-Sum"))
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("%s %s: no Date header", c.method, c.path)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d requests used %d streams, want 1", len(cases), n)
	}
}

// Events written and flushed reach the client one by one, not at the end.
func TestServerStreams(t *testing.T) {
	next := make(chan struct{})
	s := newStreamServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			if i > 0 {
				<-next
			}
			io.WriteString(w, "event\n")
			w.(http.Flusher).Flush()
		}
	}))
	resp, err := s.client.Get(s.url("/watch"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		if i > 0 {
			next <- struct{}{}
		}
		line, err := br.ReadString('\n')
		if err != nil || line != "event\n" {
			t.Fatalf("event %d: %q, %v", i, line, err)
		}
	}
}

// A caller who goes away (kas closes the stream) cancels a long request.
func TestServerCancelsWhenTheStreamCloses(t *testing.T) {
	entered, cancelled := make(chan struct{}), make(chan struct{})
	s := newStreamServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered // the request runs at the far end
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url("/watch"), nil)
	if _, err := s.tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip: %v, want context.Canceled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled 5 s after the stream closed")
	}
}

// A request that outlives WatchAfter and then finishes leaves the stream
// usable: stopping the watch must not lose or break anything.
func TestServerWatchStopsCleanly(t *testing.T) {
	s := newStreamServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			// Not a wait: a slow handler, outliving WatchAfter (5 ms), is
			// what is tested.
			time.Sleep(20 * time.Millisecond)
		}
		if r.Context().Err() != nil {
			t.Errorf("%s: context cancelled while the caller waits", r.URL.Path)
		}
		io.WriteString(w, r.URL.Path)
	}))
	for i := range 6 {
		path := "/fast"
		if i%2 == 0 {
			path = "/slow"
		}
		resp, err := s.tr.RoundTrip(mustRequest(t, http.MethodGet, s.url(path), nil))
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != path {
			t.Fatalf("got %q, want %q", got, path)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("used %d streams, want 1", n)
	}
}

func mustRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// What ReverseProxy does for exec and port-forward: hijack and splice.
func TestServerUpgradeThroughReverseProxy(t *testing.T) {
	backend := newStreamServer(t, http.HandlerFunc(echoUpgrade))
	target, _ := url.Parse("http://" + backend.addr)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = backend.tr
	front := newStreamServer(t, rp)
	rwc := upgrade(t, front.tr, front.url("/exec"))
	defer rwc.Close()
	checkEcho(t, rwc, "ping")
	checkEcho(t, rwc, "pong")
}

// A response cut short upstream must not look complete downstream: the
// stream is closed, so the client sees an error instead of a short body.
func TestServerAbortedResponseIsNotComplete(t *testing.T) {
	backend := newStreamServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, _ := http.NewResponseController(w).Hijack()
		brw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		brw.Flush()
		c.Close() // no last chunk
	}))
	target, _ := url.Parse("http://" + backend.addr)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = backend.tr
	rp.ErrorLog = discardLog()
	front := newStreamServer(t, rp)
	resp, err := front.client.Get(front.url("/list"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("a response cut short upstream read as complete: %q", b)
	}
}

func TestServerRejectsBadRequests(t *testing.T) {
	s := newStreamServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, c := range []struct {
		raw  string
		code int
	}{
		{"GARBAGE\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", 431},
	} {
		conn, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, c.raw)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%.20q: %v", c.raw, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%.20q: status %d, want %d", c.raw, resp.StatusCode, c.code)
		}
	}
}

// A handler that ignores a small body keeps the stream (the rest is read
// and dropped); one that ignores a large body costs the stream. Over
// yamux, as in agentk: on TCP, closing with unread data would reset the
// connection under the client's feet.
func TestServerUnreadBody(t *testing.T) {
	client, sess := yamuxPair(t)
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ignored")
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, sess) }()
	defer func() {
		cancel()
		<-done
	}()
	var opened atomic.Int64
	tr := &Transport{Dial: func(context.Context) (net.Conn, error) {
		opened.Add(1)
		return client.OpenStream()
	}}
	defer tr.CloseIdleConnections()
	post := func(n int) {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodPost, "http://agentk/", strings.NewReader(strings.Repeat("x", n))))
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "ignored" {
			t.Fatalf("got %q", got)
		}
	}
	post(1000)
	post(1000)
	if n := opened.Load(); n != 1 {
		t.Errorf("small unread bodies: %d streams, want 1", n)
	}
	post(1 << 20)
	post(10)
	if n := opened.Load(); n != 2 {
		t.Errorf("after a large unread body: %d streams, want 2 (a new one)", n)
	}
}

// yamuxPair is a yamux session pair over a pipe, closed at the end.
func yamuxPair(t *testing.T) (client, server *mux.Session) {
	t.Helper()
	a, b := net.Pipe()
	client, err := mux.Client(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err = mux.Server(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

func TestServerExpectContinue(t *testing.T) {
	s := newStreamServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	tr := &http.Transport{ExpectContinueTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	req := mustRequest(t, http.MethodPost, s.url("/"), strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "payload" {
		t.Fatalf("got %q", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the body waited %v: no 100 Continue", d)
	}
}

func TestServerPanicClosesOnlyThatStream(t *testing.T) {
	var mu sync.Mutex
	s := newStreamServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		io.WriteString(w, "ok")
	}))
	if _, err := s.client.Get(s.url("/panic")); err == nil {
		t.Fatal("a panicking handler's request succeeded")
	}
	resp, err := s.client.Get(s.url("/fine"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "ok" {
		t.Fatalf("after a panic: %q", got)
	}
}

// FuzzServerRequest: whatever arrives on a stream, the server answers
// or closes, never panics, and its goroutine ends when the stream does.
func FuzzServerRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})}
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.serveConn(context.Background(), server)
		}()
		var wg sync.WaitGroup
		wg.Go(func() { io.Copy(io.Discard, client) })
		client.Write(in)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("serveConn still runs 5 s after its stream closed")
		}
		wg.Wait()
	})
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// Drain closes idle streams at once, lets a request in flight finish and
// closes its stream after the answer, and reports when none is left.
func TestServerDrain(t *testing.T) {
	client, srvSess := yamuxPair(t)
	entered, release := make(chan struct{}), make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, srvSess) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	tr := &Transport{Dial: func(context.Context) (net.Conn, error) { return client.OpenStream() }}
	defer tr.CloseIdleConnections()
	get := func(path string) (string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://agentk"+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get("/"); err != nil || got != "ok /" {
		t.Fatalf("GET /: %q %v", got, err)
	}
	slow := make(chan string, 1)
	go func() {
		got, err := get("/slow")
		if err != nil {
			got = err.Error()
		}
		slow <- got
	}()
	<-entered
	// A second stream, idle in the pool once answered.
	if got, err := get("/"); err != nil || got != "ok /" {
		t.Fatalf("GET / during /slow: %q %v", got, err)
	}
	if n := srvSess.NumStreams(); n != 2 {
		t.Fatalf("%d streams, want 2 (one busy, one idle)", n)
	}

	drained := srv.Drain()
	// The idle one is closed by the server: the client does not reuse
	// it, and a request that still arrives is answered on a stream of its
	// own, which closes after the answer.
	waitPooledClosedByPeer(t, tr)
	if got, err := get("/"); err != nil || got != "ok /" {
		t.Errorf("GET / while draining: %q %v", got, err)
	}
	select {
	case <-drained:
		t.Fatal("drained with a request in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if got := <-slow; got != "ok /slow" {
		t.Errorf("the request in flight during the drain: %q, want its answer", got)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("not drained 5s after the last answer")
	}
	// Every stream was closed by the server; the client's pool lets go.
	tr.CloseIdleConnections()
	tu.Eventually(t, 5*time.Second, "no stream left", func() bool { return srvSess.NumStreams() == 0 })
}
