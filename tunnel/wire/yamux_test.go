package wire_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"kubetunnel/tunnel/mux"

	"kubetunnel/internal/streamhttp"
	"kubetunnel/internal/testutil"
	"kubetunnel/tunnel/wire"
)

// pair is kas's and agentk's ends of one yamux session on loopback TCP,
// with agentk's stream server (HTTP/1.1 and protocol 2 by first byte).
type pair struct {
	kas        *mux.Session
	tr         *streamhttp.Transport
	roundTrip  func(*http.Request) (*http.Response, error)
	cancelled  chan string // paths whose request context ended early
	streamNext chan struct{}
	protocol   int
}

// waitWatched waits until the far end watches a running request's
// stream for the caller going away. streamhttp.Server (protocol 1)
// starts a goroutine for that after its WatchAfter; wire.Serve
// (protocol 2) registers with the stream before the handler runs, so
// there is nothing to wait for.
func (p *pair) waitWatched(t *testing.T) {
	if p.protocol == 1 {
		testutil.WaitBlocked(t, 5*time.Second, "the far end to watch the stream", "watchStream")
	}
}

func newPair(t *testing.T, protocol int) *pair {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	kasSess, _ := mux.Server(sc, nil)
	agentSess, _ := mux.Client(cc, nil)
	p := &pair{kas: kasSess, cancelled: make(chan string, 10), streamNext: make(chan struct{}), protocol: protocol}
	srv := &streamhttp.Server{
		Handler:     http.HandlerFunc(p.handle),
		OtherPrefix: wire.RequestMagic,
		Other: func(ctx context.Context, c net.Conn, br *bufio.Reader) bool {
			return wire.Serve(ctx, c, br, http.HandlerFunc(p.handle))
		},
	}
	if protocol == 3 {
		// Protocol 2 as agentk serves it: requests without a body run in
		// their stream's context.
		srv.ConnContext = wire.StreamContext
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ctx, agentSess)
	}()
	tr := &streamhttp.Transport{Dial: func(context.Context) (net.Conn, error) { return kasSess.OpenStream() }}
	p.tr = tr
	p.roundTrip = tr.RoundTrip
	if protocol >= 2 {
		p.roundTrip = tr.RoundTripWire
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		kasSess.Close()
		agentSess.Close()
		<-served
	})
	return p
}

func (p *pair) handle(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/echo":
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Seen-Length", fmt.Sprint(r.ContentLength))
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Query", r.URL.RawQuery)
		w.Header()["X-Multi"] = r.Header["X-Multi"]
		if r.URL.Query().Has("length") {
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		}
		w.Write(b)
	case "/stream":
		// One line per step the client asks for: it reads each before
		// asking for the next, so an unflushed line would hang the test.
		w.Header().Set("Content-Type", "text/plain")
		for i := 0; ; i++ {
			fmt.Fprintf(w, "line %d\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-p.streamNext:
			case <-r.Context().Done():
				p.cancelled <- r.URL.Path
				return
			}
		}
	case "/ctx":
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%p", r.Context())
	case "/upgrade":
		var rd io.Reader
		var c net.Conn
		if ww, ok := w.(*wire.ResponseWriter); ok {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "test")
			w.WriteHeader(http.StatusSwitchingProtocols)
			br, conn, err := ww.Upgraded()
			if err != nil {
				panic(err)
			}
			rd, c = br, conn
		} else {
			conn, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
			brw.Flush()
			rd, c = brw, conn
		}
		defer c.Close()
		io.Copy(c, rd) // echo until kas closes
	default:
		http.NotFound(w, r)
	}
}

func TestBothProtocolsThroughYamux(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	for _, protocol := range []int{1, 2, 3} {
		t.Run(modeName(protocol), func(t *testing.T) {
			p := newPair(t, protocol)
			do := func(method, path string, body io.Reader, length int64) (*http.Response, []byte) {
				t.Helper()
				req, _ := http.NewRequest(method, "http://agentk"+path, body)
				if body != nil {
					req.ContentLength = length
				}
				req.Header["X-Multi"] = []string{"a", "b"}
				resp, err := p.roundTrip(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("%s %s body: %v", method, path, err)
				}
				return resp, b
			}

			resp, b := do("GET", "/echo?a=1&b=%2F", nil, 0)
			if resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("X-Query") != "a=1&b=%2F" ||
				strings.Join(resp.Header["X-Multi"], ",") != "a,b" || resp.Header.Get("X-Method") != "GET" {
				t.Errorf("GET: %d %q %v", resp.StatusCode, b, resp.Header)
			}
			resp, _ = do("GET", "/nothing", nil, 0)
			if resp.StatusCode != 404 {
				t.Errorf("404 path: %d", resp.StatusCode)
			}
			// Sequential requests share one stream.
			if n := p.kas.NumStreams(); n != 1 || p.tr.IdleConns() != 1 {
				t.Errorf("%d streams, %d idle after two requests in turn, want 1 and 1", n, p.tr.IdleConns())
			}
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
			for _, length := range []int64{int64(len(big)), -1} {
				var body io.Reader = bytes.NewReader(big)
				if length < 0 {
					body = io.MultiReader(body) // hides the length
				}
				resp, b = do("POST", "/echo?length", body, length)
				if !bytes.Equal(b, big) {
					t.Errorf("POST body of length %d: %d bytes back", length, len(b))
				}
				if length > 0 && resp.ContentLength != length {
					t.Errorf("response ContentLength %d", resp.ContentLength)
				}
			}

			// Many at once on one session.
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					msg := strings.Repeat(fmt.Sprint(i), 100*i)
					req, _ := http.NewRequest("PUT", "http://agentk/echo", strings.NewReader(msg))
					resp, err := p.roundTrip(req)
					if err != nil {
						t.Errorf("parallel %d: %v", i, err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(b) != msg {
						t.Errorf("parallel %d: %q", i, b)
					}
				})
			}
			wg.Wait()

			// Streaming: each line arrives as written; closing the body
			// cancels the request at the far end.
			req, _ := http.NewRequest("GET", "http://agentk/stream", nil)
			resp, err := p.roundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.ContentLength != -1 {
				t.Errorf("streamed ContentLength %d", resp.ContentLength)
			}
			br := bufio.NewReader(resp.Body)
			for i := range 3 {
				line, err := br.ReadString('\n')
				if err != nil || line != fmt.Sprintf("line %d\n", i) {
					t.Fatalf("line %d: %q %v", i, line, err)
				}
				if i < 2 {
					p.streamNext <- struct{}{}
				}
			}
			// The close must reach a running watch, as a caller leaving a
			// kubectl watch does, not a request still under WatchAfter.
			p.waitWatched(t)
			resp.Body.Close()
			select {
			case <-p.cancelled:
			case <-time.After(5 * time.Second):
				t.Fatal("closing the body did not cancel the request")
			}

			// Upgrade: a raw pipe both ways after the 101.
			req, _ = http.NewRequest("GET", "http://agentk/upgrade", nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "test")
			resp, err = p.roundTrip(req)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			rwc, ok := resp.Body.(io.ReadWriteCloser)
			if !ok {
				t.Fatalf("101 body is a %T", resp.Body)
			}
			msg := bytes.Repeat([]byte("pipe"), 100_000)
			go rwc.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(rwc, got); err != nil || !bytes.Equal(got, msg) {
				t.Errorf("upgraded echo: %v", err)
			}
			rwc.Close()
		})
	}
}

// A caller whose context ends mid-body stops reading, and the far end
// sees the request cancelled (the stream closes under it).
func TestProtocol2CancelMidBody(t *testing.T) {
	for _, protocol := range []int{2, 3} {
		t.Run(modeName(protocol), func(t *testing.T) { testCancelMidBody(t, protocol) })
	}
}

// modeName names newPair's protocol argument: 3 is protocol 2 with
// wire.StreamContext, as agentk serves it.
func modeName(protocol int) string {
	if protocol == 3 {
		return "protocol2-stream-context"
	}
	return fmt.Sprintf("protocol%d", protocol)
}

func testCancelMidBody(t *testing.T, protocol int) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	p := newPair(t, protocol)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://agentk/stream", nil)
	resp, err := p.roundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	p.waitWatched(t)
	cancel()
	read := make(chan struct{})
	go func() {
		io.Copy(io.Discard, br)
		close(read)
	}()
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		t.Fatal("the body read went on after the cancel")
	}
	resp.Body.Close()
	select {
	case <-p.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the far end did not see the cancel")
	}
}

// With StreamContext, the requests without a body that one stream
// carries run in the stream's context, one after the other (no context of
// their own), and a request with a body still gets its own.
func TestStreamContextServesRequestsInTheStreamsContext(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	p := newPair(t, 3)
	ctxOf := func(method string, body io.Reader) string {
		t.Helper()
		req, _ := http.NewRequest(method, "http://agentk/ctx", body)
		resp, err := p.roundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s /ctx: %d %v", method, resp.StatusCode, err)
		}
		return string(b)
	}
	first := ctxOf("GET", nil)
	for i := range 5 {
		if got := ctxOf("GET", nil); got != first {
			t.Fatalf("GET %d ran in context %s, the first in %s: not the stream's", i+2, got, first)
		}
	}
	if got := ctxOf("POST", strings.NewReader("x")); got == first {
		t.Errorf("a request with a body ran in the stream's context %s", got)
	}
	if n := p.tr.IdleConns(); n != 1 {
		t.Errorf("%d idle streams after 7 requests in turn, want 1", n)
	}
}

// A peer that claims a head over MaxHeadSize, or sends a body chunk over
// MaxChunkSize, gets its stream refused and closed without agentk
// buffering it, while requests on other streams go on being served.
func TestProtocol2LimitsHold(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	p := newPair(t, 2)
	st, err := p.kas.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Claims 1 GiB, sends 64 KiB of it.
	hdr := []byte{wire.RequestMagic, 0x40, 0, 0, 0}
	st.Write(append(hdr, make([]byte, 64<<10)...))
	rh, err := wire.ReadResponse(bufio.NewReader(st))
	if err != nil || rh.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized head: %+v %v", rh, err)
	}

	// A chunked body whose chunk claims 2 MiB: the handler's read fails.
	st2, _ := p.kas.OpenStream()
	defer st2.Close()
	b := wire.AppendRequest(nil, &wire.RequestHead{Method: "POST", URI: "/echo", Header: http.Header{}, BodyLength: -1})
	b = append(b, 0x80, 0x80, 0x80, 0x01) // uvarint 2 MiB
	st2.Write(b)
	br := bufio.NewReader(st2)
	rh, err = wire.ReadResponse(br)
	if err != nil || rh.Status != http.StatusInternalServerError {
		t.Fatalf("oversized chunk: %+v %v", rh, err)
	}
	msg, _ := io.ReadAll(wire.BodyReader(br, rh.BodyLength))
	if !strings.Contains(string(msg), "chunk of 2097152 bytes") {
		t.Errorf("oversized chunk answer %q", msg)
	}

	// Legitimate traffic is still served.
	for i := range 5 {
		req, _ := http.NewRequest("POST", "http://agentk/echo", strings.NewReader(fmt.Sprint(i)))
		resp, err := p.roundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != fmt.Sprint(i) {
			t.Errorf("request %d after the attack: %q", i, got)
		}
	}
}
