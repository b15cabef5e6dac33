package httpserve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"kubetunnel/internal/testpki"
)

// serveBoth serves h with ServeFast and with a plain http.Server, each
// on its own loopback listener, until the test ends; it returns their
// addresses.
func serveBoth(t testing.TB, h http.Handler, tweak func(*http.Server)) (fast, plain string) {
	t.Helper()
	var addrs []string
	for i, serve := range []func(context.Context, net.Listener, *http.Server, time.Duration) error{ServeFast, ServeServer} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
			ErrorLog: log.New(io.Discard, "", 0)}
		if tweak != nil {
			tweak(srv)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- serve(ctx, ln, srv, time.Second) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server %d: %v", i, err)
			}
		})
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs[0], addrs[1]
}

var dateLine = regexp.MustCompile(`(?m)^Date: [^\r]*\r$`)

// transcript writes raw to addr, half-closes, and returns all that comes
// back until the server closes, the Date header's value blanked.
func transcript(t testing.TB, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		_, _ = io.WriteString(c, raw)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	b, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("reading from %s: %v (after %q)", addr, err, b)
	}
	return dateLine.ReplaceAllString(string(b), "Date: -\r")
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// cases are handlers for the differential tests, by path.
var cases = map[string]http.HandlerFunc{
	"/empty": func(w http.ResponseWriter, r *http.Request) {},
	"/small": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") },
	"/json": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		io.WriteString(w, `{"kind":"Status"}`)
	},
	"/cl": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	},
	"/cl-bad": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "x")
		io.WriteString(w, "hello")
	},
	"/big": func(w http.ResponseWriter, r *http.Request) {
		for i := range 100 {
			fmt.Fprintf(w, "line %03d %s\n", i, strings.Repeat("x", 90))
		}
	},
	"/big-one-write": func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte("y"), 10000)) },
	"/big-cl": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10000")
		w.Write(bytes.Repeat([]byte("z"), 10000))
	},
	"/flushed": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		io.WriteString(w, "a")
		http.NewResponseController(w).Flush()
		io.WriteString(w, "b")
	},
	"/flushed-cl": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		w.(http.Flusher).Flush()
		io.WriteString(w, "ab")
	},
	"/flush-nothing": func(w http.ResponseWriter, r *http.Request) { w.(http.Flusher).Flush() },
	"/204": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusNoContent)
		io.WriteString(w, "hello")
	},
	"/304": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Etag", `"1"`)
		w.WriteHeader(http.StatusNotModified)
	},
	"/404": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no such thing", http.StatusNotFound) },
	"/599": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(599) },
	"/103": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "after hints")
	},
	"/twice": func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		w.WriteHeader(http.StatusOK)
	},
	"/late-header": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Early", "1")
		w.WriteHeader(http.StatusOK)
		w.Header().Set("X-Late", "1")
		io.WriteString(w, "body")
	},
	"/trailers": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum, Content-Length")
		io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Undeclared", "u")
	},
	"/te-identity": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "identity")
		io.WriteString(w, "raw body")
	},
	"/te-chunked-cl": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "chunked")
		w.Header().Set("Content-Length", "4")
		io.WriteString(w, "body")
	},
	"/close": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	},
	"/short": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "hello") // 5 of 10: the connection must close
	},
	"/too-long": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "3")
		if _, err := io.WriteString(w, "hello"); err != http.ErrContentLength {
			panic("want ErrContentLength")
		}
		io.WriteString(w, "hey")
	},
	"/abort": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	},
	"/panic": func(w http.ResponseWriter, r *http.Request) { panic("a bug") },
	"/echo-request": func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s host=%s close=%v len=%d remote=%v body=%q",
			r.Method, r.RequestURI, r.Proto, r.Host, r.Close, r.ContentLength, r.RemoteAddr != "", b)
		for _, k := range []string{"Host", "Accept", "Connection", "X-A"} {
			fmt.Fprintf(w, " %s=%q", k, r.Header[k])
		}
	},
}

func caseHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := cases[r.URL.Path]
		if !ok {
			h = cases["/echo-request"]
		}
		h(w, r)
	})
}

// ServeFast answers a GET or HEAD with what net/http would have written,
// byte for byte but the Date: every case, then a request after it on the
// same connection (or net/http's end of it).
func TestFastAnswersAsNetHTTP(t *testing.T) {
	fast, plain := serveBoth(t, caseHandler(), nil)
	for path := range cases {
		for _, method := range []string{"GET", "HEAD"} {
			raw := method + " " + path + " HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n" +
				"GET /next HTTP/1.1\r\nHost: example\r\n\r\n"
			a0, h0 := answered.Load(), handedOver.Load()
			got := transcript(t, fast, raw)
			if answered.Load() == a0 || handedOver.Load() != h0 {
				t.Errorf("%s %s: ServeFast answered %d, handed over %d; want it answered", method, path, answered.Load()-a0, handedOver.Load()-h0)
			}
			if want := transcript(t, plain, raw); got != want {
				t.Errorf("%s %s:\nServeFast:\n%s\nnet/http:\n%s", method, path, got, want)
			}
		}
	}
	// The caller's own Connection: close.
	raw := "GET /small HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\nGET /next HTTP/1.1\r\nHost: example\r\n\r\n"
	if got, want := transcript(t, fast, raw), transcript(t, plain, raw); got != want {
		t.Errorf("Connection: close:\nServeFast:\n%s\nnet/http:\n%s", got, want)
	}
}

// What ServeFast does not answer it hands to net/http, with what it had
// read of the request: the answers are net/http's.
func TestFastHandsOverWhatItDoesNotAnswer(t *testing.T) {
	fast, plain := serveBoth(t, caseHandler(), func(s *http.Server) { s.MaxHeaderBytes = 4096 })
	next := "GET /next HTTP/1.1\r\nHost: example\r\n\r\n"
	for name, req := range map[string]string{
		"POST":               "POST /p HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\n\r\nhello",
		"POST chunked":       "POST /p HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET with a body":    "GET /p HTTP/1.1\r\nHost: example\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.0":           "GET /p HTTP/1.0\r\nHost: example\r\n\r\n",
		"HTTP/1.0 keepalive": "GET /p HTTP/1.0\r\nHost: example\r\nConnection: keep-alive\r\n\r\n",
		"Expect":             "GET /p HTTP/1.1\r\nHost: example\r\nExpect: 100-continue\r\n\r\n",
		"no Host":            "GET /p HTTP/1.1\r\nAccept: */*\r\n\r\n",
		"two Hosts":          "GET /p HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"bad Host":           "GET /p HTTP/1.1\r\nHost: a b\r\n\r\n",
		"bad header name":    "GET /p HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n",
		"bad header value":   "GET /p HTTP/1.1\r\nHost: a\r\nX-A: 1\x01\r\n\r\n",
		"too large":          "GET /p HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("a", 20000) + "\r\n\r\n",
		"malformed":          "GET\r\n\r\n",
		"bad method":         "G(T /p HTTP/1.1\r\nHost: a\r\n\r\n",
		"HTTP/2 preface":     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"absolute URI":       "GET http://example/p?q=1 HTTP/1.1\r\nHost: example\r\n\r\n",
		"half a head":        "GET /p HTTP/1.1\r\nHost: exa",
	} {
		for _, raw := range []string{req + next, next + req + next} {
			h0 := handedOver.Load()
			got := transcript(t, fast, raw)
			if n := handedOver.Load() - h0; n != 1 && name != "half a head" {
				t.Errorf("%s: %d connections handed over, want 1", name, n)
			}
			want := transcript(t, plain, raw)
			if got != want {
				t.Errorf("%s (%q):\nServeFast:\n%s\nnet/http:\n%s", name, raw[:min(len(raw), 60)], got, want)
			}
		}
	}
}

// An upgrade goes to net/http, which hands the hijacked connection to
// the handler; the bytes sent right after the request reach it.
func TestFastHandsOverAnUpgrade(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		b := make([]byte, 6)
		if _, err := io.ReadFull(brw, b); err != nil {
			t.Error(err)
		}
		brw.Write(b)
		brw.Flush()
	})
	fast, plain := serveBoth(t, h, nil)
	raw := "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nabcdef"
	got, want := transcript(t, fast, raw), transcript(t, plain, raw)
	if got != want || !strings.HasSuffix(got, "abcdef") {
		t.Fatalf("ServeFast:\n%s\nnet/http:\n%s", got, want)
	}
}

// A handler that starts a ClientWatch learns that its client left: the
// request's context is canceled.
func TestClientWatchCancelsWhenTheClientLeaves(t *testing.T) {
	canceled := make(chan time.Duration, 1)
	fast, _ := serveBoth(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := WatchClient(r)
		defer cw.Stop()
		if cw == nil {
			if r.Context().Value(fastConnKey{}) != nil {
				t.Error("no client watch on a connection ServeFast serves")
			}
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
	}), nil)
	c, err := net.Dial("tcp", fast)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /watch HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if d := <-canceled; d < 0 || d > 2*time.Second {
		t.Fatalf("the handler's context was canceled after %v, want within 2s of the client leaving", d)
	}
}

// A watch that ends leaves the connection whole: the next request is
// served, also when the client had already sent it.
func TestClientWatchLeavesTheConnectionWhole(t *testing.T) {
	fast, _ := serveBoth(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := WatchClient(r)
		defer cw.Stop()
		if cw == nil {
			t.Error("no client watch")
		}
		cw.Start()
		cw.Start() // a second Start does nothing
		time.Sleep(20 * time.Millisecond)
		if r.Context().Err() != nil {
			t.Errorf("%s: context canceled with the client still there", r.URL.Path)
		}
		io.WriteString(w, r.URL.Path)
	}), nil)
	c, err := net.Dial("tcp", fast)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	read := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
	// Pipelined: each watch finds the next request, which is served.
	io.WriteString(c, "GET /p0 HTTP/1.1\r\nHost: x\r\n\r\nGET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, p := range []string{"/p0", "/p1", "/p2"} {
		read(p)
	}
	// One at a time: each watch is ended by the handler.
	for i := range 3 {
		fmt.Fprintf(c, "GET /seq%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		read(fmt.Sprintf("/seq%d", i))
	}
}

// Over TLS net/http serves, and watches the caller itself.
func TestFastLeavesTLSToNetHTTP(t *testing.T) {
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
		if cw := WatchClient(r); cw != nil || r.TLS == nil {
			t.Errorf("TLS request: watch %v, TLS %v", cw, r.TLS != nil)
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
	go func() { done <- ServeFast(ctx, ln, srv, time.Second) }()
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

// A head sent slowly (slowloris) is cut at ReadHeaderTimeout, an idle
// connection at IdleTimeout, while another client is served.
func TestFastTimeouts(t *testing.T) {
	fast, _ := serveBoth(t, caseHandler(), func(s *http.Server) {
		s.ReadHeaderTimeout = 300 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
	})
	for name, raw := range map[string]string{"slow head": "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", "idle": ""} {
		c, err := net.Dial("tcp", fast)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		io.WriteString(c, raw)
		if got := transcript(t, fast, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasSuffix(got, "hello") {
			t.Errorf("%s: another client got %q", name, got)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if d := time.Since(start); n != 0 || err == nil || d > 2*time.Second {
			t.Errorf("%s: read %d, %v after %v; want the connection closed after ~300ms", name, n, err, d)
		}
		c.Close()
	}
}

// A panic closes the connection (logged unless http.ErrAbortHandler);
// the server goes on serving.
func TestFastPanics(t *testing.T) {
	var logged bytes.Buffer
	var mu sync.Mutex
	fast, _ := serveBoth(t, caseHandler(), func(s *http.Server) {
		s.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logged.Write(p) }), "", 0)
	})
	for _, path := range []string{"/panic", "/abort"} {
		got := transcript(t, fast, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
		if strings.Contains(got, "/after") {
			t.Errorf("%s: the connection served another request after a panic:\n%s", path, got)
		}
	}
	mu.Lock()
	log := logged.String()
	mu.Unlock()
	if !strings.Contains(log, "panic serving") || !strings.Contains(log, "a bug") || strings.Count(log, "panic serving") != 1 {
		t.Errorf("log: %q, want the one panic that is not ErrAbortHandler", log)
	}
	if got := transcript(t, fast, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasSuffix(got, "hello") {
		t.Errorf("after the panics: %q", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A stop lets a request in flight finish within the grace, closes idle
// connections, and returns.
func TestFastShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inHandler := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inHandler)
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, "done")
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeFast(ctx, ln, srv, 5*time.Second) }()
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(idle), nil); err != nil {
		t.Fatal(err)
	}
	slow := make(chan string, 1)
	go func() { slow <- transcript(t, ln.Addr().String(), "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") }()
	<-inHandler
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeFast: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stop took %v", d)
	}
	if got := <-slow; !strings.HasSuffix(got, "done") || !strings.Contains(got, "Connection: close") {
		t.Errorf("the request in flight got %q, want its answer and Connection: close", got)
	}
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("idle connection: read %d, %v; want it closed", n, err)
	}
}

// Whatever a client sends, ServeFast's answers are net/http's (but the
// Date): what it answers itself, and what it hands over.
func FuzzFastAsNetHTTP(f *testing.F) {
	for path := range cases {
		f.Add("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\nHEAD " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
	f.Add("GET /a HTTP/1.1\nHost: x\n\n")
	f.Add("GET /a?b=%zz HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
	fast, plain := serveBoth(f, caseHandler(), func(s *http.Server) { s.MaxHeaderBytes = 2048 })
	f.Fuzz(func(t *testing.T, raw string) {
		if strings.Contains(raw, "/panic") || strings.Contains(raw, "/too-long") {
			return // they panic on purpose (logged, or not a failure here)
		}
		got, want := transcript(t, fast, raw), transcript(t, plain, raw)
		if got != want {
			t.Fatalf("for %q:\nServeFast:\n%s\nnet/http:\n%s", raw, got, want)
		}
	})
}

// A temporary accept failure (too many open files) is waited out, as
// net/http does, not the end of the listener.
func TestFastAcceptRetriesTemporaryErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln, fails: 3}
	srv := &http.Server{Handler: caseHandler()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeFast(ctx, fl, srv, time.Second) }()
	if got := transcript(t, ln.Addr().String(), "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasSuffix(got, "hello") {
		t.Errorf("after temporary accept errors: %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeFast: %v", err)
	}
}

type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, temporaryError{}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

type temporaryError struct{}

func (temporaryError) Error() string   { return "accept: too many open files" }
func (temporaryError) Temporary() bool { return true }
func (temporaryError) Timeout() bool   { return false }
