package mux

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// session is the API both implementations share, so each test runs
// against every pairing: ours with ours, and ours with hashicorp/yamux
// on either side (an old agentk or kas).
type session interface {
	Open() (net.Conn, error)
	Accept() (net.Conn, error)
	GoAway() error
	Close() error
	NumStreams() int
}

type pairing struct {
	name           string
	client, server func(net.Conn) session
}

func ours(client bool, cfg *Config) func(net.Conn) session {
	return func(c net.Conn) session {
		if client {
			s, _ := Client(c, cfg)
			return s
		}
		s, _ := Server(c, cfg)
		return s
	}
}

func theirs(client bool) func(net.Conn) session {
	return func(c net.Conn) session {
		cfg := yamux.DefaultConfig()
		cfg.LogOutput = io.Discard
		cfg.EnableKeepAlive = false
		if client {
			s, _ := yamux.Client(c, cfg)
			return s
		}
		s, _ := yamux.Server(c, cfg)
		return s
	}
}

// framed gives a session a connection that writes frames whole
// (FrameWriter), as tunnel's connections do.
func framed(f func(net.Conn) session) func(net.Conn) session {
	return func(c net.Conn) session { return f(&frameConn{Conn: c}) }
}

// frameConn is a FrameWriter that checks what the session gives it: a
// Write is a frame without a body, a WriteFrame a header and its body.
type frameConn struct {
	net.Conn
	mu            sync.Mutex
	writes, whole int
	bad           error
}

func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	if len(p) != HeaderSize && c.bad == nil {
		c.bad = errors.New("a Write that is not a header alone")
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *frameConn) WriteFrame(hdr, body []byte) error {
	c.mu.Lock()
	c.whole++
	if (len(hdr) != HeaderSize || len(body) == 0) && c.bad == nil {
		c.bad = errors.New("a WriteFrame without a header and a body")
	}
	c.mu.Unlock()
	_, err := c.Conn.Write(append(append([]byte{}, hdr...), body...))
	return err
}

var pairings = []pairing{
	{"ours-ours", ours(true, nil), ours(false, nil)},
	{"ours-ours-framed", framed(ours(true, nil)), framed(ours(false, nil))},
	{"framed-hashicorp", framed(ours(true, nil)), theirs(false)},
	{"ours-hashicorp", ours(true, nil), theirs(false)},
	{"hashicorp-ours", theirs(true), ours(false, nil)},
}

// tcpPair is a loopback TCP connection (net.Pipe has no buffer, which
// hides flow-control bugs).
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	return a, b
}

// streamWithByte opens a stream between our own sessions and writes one
// byte ("x") on it; sc is the server's end, the byte not read yet.
func streamWithByte(t *testing.T) (client, server session, c, sc net.Conn) {
	t.Helper()
	client, server = pair(t, pairings[0])
	c, err := client.Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if sc, err = server.Accept(); err != nil {
		t.Fatal(err)
	}
	return client, server, c, sc
}

// sessions is a client and a server Session of ours on a loopback
// connection, closed when the test ends.
func sessions(t *testing.T, clientCfg, serverCfg *Config) (client, server *Session) {
	a, b := tcpPair(t)
	client, _ = Client(a, clientCfg)
	server, _ = Server(b, serverCfg)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

func pair(t *testing.T, p pairing) (client, server session) {
	a, b := tcpPair(t)
	client, server = p.client(a), p.server(b)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// Streams opened from either side carry more than a window each way,
// concurrently, and half-close: each side reads the other's bytes to EOF.
func TestStreamsBothWays(t *testing.T) {
	for _, p := range pairings {
		t.Run(p.name, func(t *testing.T) {
			client, server := pair(t, p)
			const streams, size = 8, 3 << 20 // 3 MiB: twelve initial windows
			var wg sync.WaitGroup
			errs := make(chan error, 4*streams)
			// Each side echoes what it accepts.
			echo := func(s session) {
				for {
					c, err := s.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						_, _ = io.Copy(c, c)
					}()
				}
			}
			go echo(client)
			go echo(server)
			for i := range 2 * streams {
				opener := client
				if i%2 == 1 {
					opener = server
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- roundTrip(opener, size)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func roundTrip(s session, size int) error {
	c, err := s.Open()
	if err != nil {
		return err
	}
	defer c.Close()
	want := make([]byte, size)
	rand.Read(want)
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.Close() // half-close: the echo ends
		}
		done <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("echoed bytes differ")
	}
	return nil
}

// After GoAway the peer cannot open streams; streams already open still work.
func TestGoAway(t *testing.T) {
	for _, p := range pairings {
		t.Run(p.name, func(t *testing.T) {
			client, server := pair(t, p)
			c, err := client.Open()
			if err != nil {
				t.Fatal(err)
			}
			sc, err := server.Accept()
			if err != nil {
				t.Fatal(err)
			}
			if err := server.GoAway(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				n, err := client.Open()
				if err != nil {
					if !errors.Is(err, ErrRemoteGoAway) && !errors.Is(err, yamux.ErrRemoteGoAway) {
						t.Fatalf("open after GoAway: %v", err)
					}
					break
				}
				n.Close()
				if time.Now().After(deadline) {
					t.Fatal("streams still open after the peer's GoAway")
				}
				time.Sleep(time.Millisecond) // the GoAway frame is on its way
			}
			if _, err := c.Write([]byte("still here")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 10)
			if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "still here" {
				t.Fatalf("read %q, %v", buf, err)
			}
		})
	}
}

// A stream closed on both sides is forgotten by both sessions.
func TestClosedStreamsAreForgotten(t *testing.T) {
	for _, p := range pairings {
		t.Run(p.name, func(t *testing.T) {
			client, server := pair(t, p)
			for range 50 {
				c, err := client.Open()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				sc, err := server.Accept()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(sc, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				c.Close()
				if _, err := sc.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("read after the peer's close: %v, want EOF", err)
				}
				sc.Close()
			}
			waitFor(t, func() bool { return client.NumStreams() == 0 && server.NumStreams() == 0 },
				func() string { return "streams left open" })
		})
	}
}

func waitFor(t *testing.T, ok func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal(what())
		}
		time.Sleep(time.Millisecond)
	}
}

// A read deadline ends a waiting Read with a timeout net.Error, and a
// deadline in the past wakes one at once (streamhttp relies on both).
func TestReadDeadline(t *testing.T) {
	_, _, c, sc := streamWithByte(t)
	io.ReadFull(sc, make([]byte, 1))
	sc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := sc.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	sc.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := sc.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the read block
	sc.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-done:
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("woken read: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a past deadline did not wake the read")
	}
	// The stream still works afterwards.
	sc.SetReadDeadline(time.Time{})
	c.Write([]byte("y"))
	b := make([]byte, 1)
	if _, err := io.ReadFull(sc, b); err != nil || b[0] != 'y' {
		t.Fatalf("read after deadlines: %q %v", b, err)
	}
}

// A writer whose peer does not read waits for the window, not forever
// past its write deadline, and holds at most a window in the peer.
func TestWriteWaitsForWindow(t *testing.T) {
	client, server := pair(t, pairings[0])
	c, _ := client.Open()
	sc, _ := server.Accept()
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := c.Write(make([]byte, 2*initialWindow))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a reader that does not read: %d, %v; want a timeout", n, err)
	}
	if n != initialWindow {
		t.Fatalf("wrote %d bytes before the window closed, want %d", n, initialWindow)
	}
	// Reading half the window gives it back; the rest goes through.
	c.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, initialWindow))
		done <- err
	}()
	if _, err := io.ReadFull(sc, make([]byte, 2*initialWindow)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A stream closed here whose peer never closes is reset after
// StreamCloseTimeout, and both sessions forget it.
func TestStreamCloseTimeout(t *testing.T) {
	a, b := tcpPair(t)
	client, _ := Client(a, &Config{StreamCloseTimeout: 50 * time.Millisecond})
	server, _ := Server(b, nil)
	defer client.Close()
	defer server.Close()
	c, _ := client.OpenStream()
	c.Write([]byte("x"))
	sc, _ := server.AcceptStream()
	c.Close()
	// The server side never closes; its reads see EOF, then the reset.
	if _, err := io.ReadAll(sc); err != nil && !errors.Is(err, ErrConnectionReset) {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return client.NumStreams() == 0 && server.NumStreams() == 0 },
		func() string { return "the half-closed stream was not reset" })
	if _, err := sc.Write([]byte("late")); !errors.Is(err, ErrConnectionReset) {
		t.Fatalf("write on a reset stream: %v", err)
	}
}

// A peer that stops answering pings ends the session within the
// keepalive interval plus the write timeout.
func TestKeepAliveTimeout(t *testing.T) {
	a, b := tcpPair(t)
	defer b.Close()
	go io.Copy(io.Discard, b) // reads, never answers
	s, _ := Client(a, &Config{KeepAliveInterval: 20 * time.Millisecond, WriteTimeout: 50 * time.Millisecond})
	select {
	case <-s.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("session outlived its silent peer")
	}
	s.Close()
	if _, err := s.OpenStream(); !errors.Is(err, ErrSessionShutdown) {
		t.Fatalf("open on a closed session: %v", err)
	}
}

// A peer that answers pings but never accepts a stream opened to it
// ends the session after StreamOpenTimeout; one that accepts does not.
func TestStreamOpenTimeout(t *testing.T) {
	cfg := &Config{KeepAliveInterval: 20 * time.Millisecond, StreamOpenTimeout: 100 * time.Millisecond}
	client, server := sessions(t, cfg, nil)
	// The server accepts the first stream, then none.
	if _, err := client.OpenStream(); err != nil {
		t.Fatal(err)
	}
	if _, err := server.AcceptStream(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // three open timeouts, fifteen keepalives
	if client.IsClosed() {
		t.Fatal("the session ended although the peer accepted its stream")
	}
	if _, err := client.OpenStream(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case <-client.CloseChan():
		t.Logf("session ended %v after the open", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("the session outlived a stream its peer never accepted")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("the session ended %v after the open, before StreamOpenTimeout", d)
	}
}

// Close ends every stream: a blocked Read returns, writes fail.
func TestCloseEndsStreams(t *testing.T) {
	client, server, _, sc := streamWithByte(t)
	io.ReadFull(sc, make([]byte, 1))
	done := make(chan error, 1)
	go func() {
		_, err := sc.Read(make([]byte, 1))
		done <- err
	}()
	server.Close()
	select {
	case err := <-done:
		if err != io.EOF {
			t.Fatalf("read on a closed session: %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked after Close")
	}
	if _, err := sc.Write([]byte("x")); err == nil {
		t.Fatal("write on a closed session succeeded")
	}
	// The client sees the connection go.
	select {
	case <-client.(*Session).CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("peer session did not end")
	}
}

// More unaccepted streams than the backlog: the extra ones are reset,
// and the session goes on.
func TestAcceptBacklog(t *testing.T) {
	client, server := sessions(t, &Config{AcceptBacklog: 64}, &Config{AcceptBacklog: 2})
	var conns []*Stream
	for range 4 {
		c, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Two wait in the backlog; the other two are reset.
	reset := 0
	for _, c := range conns[2:] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, ErrConnectionReset) {
			reset++
		}
	}
	if reset != 2 {
		t.Fatalf("%d of the streams over the backlog were reset, want 2", reset)
	}
	for range 2 {
		if _, err := server.AcceptStream(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := roundTripAccepted(client, server); err != nil {
		t.Fatal(err)
	}
}

// A peer that stops accepting streams fills the open slots; a caller
// waiting for one gives up with its context, and the next open goes
// through once the peer accepts again.
func TestOpenStreamContext(t *testing.T) {
	client, server := sessions(t, &Config{AcceptBacklog: 2}, &Config{AcceptBacklog: 64})
	for range 2 {
		if _, err := client.OpenStream(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := client.OpenStreamContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OpenStreamContext with both slots held = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("OpenStreamContext gave up after %v, want about 50ms", d)
	}
	if _, err := server.AcceptStream(); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := client.OpenStreamContext(ctx2); err != nil {
		t.Fatalf("OpenStreamContext after the peer accepted one: %v", err)
	}
}

func roundTripAccepted(client, server *Session) (int, error) {
	c, err := client.OpenStream()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ok")); err != nil {
		return 0, err
	}
	sc, err := server.AcceptStream()
	if err != nil {
		return 0, err
	}
	defer sc.Close()
	return io.ReadFull(sc, make([]byte, 2))
}

// A frame the protocol does not allow ends the session, not the process.
func TestProtocolErrorsEndTheSession(t *testing.T) {
	for name, frame := range map[string][]byte{
		"version":          {1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0},
		"type":             {0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"own parity":       {0, 1, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0},
		"over the window":  {0, 0, 0, 1, 0, 0, 0, 1, 0, 0x10, 0, 0},
		"huge data length": {0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := tcpPair(t)
			defer a.Close()
			s, _ := Server(b, nil)
			defer s.Close()
			a.Write(frame)
			go io.Copy(io.Discard, a)
			select {
			case <-s.CloseChan():
			case <-time.After(5 * time.Second):
				t.Fatal("session survived a bad frame")
			}
		})
	}
}

// An empty Read reports what a Read would, without waiting: nothing
// yet (with a past deadline: a timeout), data waiting, the peer's close.
// streamhttp's idle pool checks its streams this way.
func TestEmptyRead(t *testing.T) {
	_, _, c, sc := streamWithByte(t)
	if n, err := sc.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read with data waiting: %d, %v", n, err)
	}
	io.ReadFull(sc, make([]byte, 1))
	sc.SetReadDeadline(time.Unix(1, 0))
	if _, err := sc.Read(nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("empty read of an open, idle stream: %v, want a timeout", err)
	}
	c.Close()
	waitFor(t, func() bool {
		_, err := sc.Read(nil)
		return err == io.EOF
	}, func() string { return "an empty read never saw the peer's close" })
}

// A peer that stops reading the connection ends the session within
// WriteTimeout (a writer does not hang), and every writer returns.
func TestWriteTimeoutEndsSession(t *testing.T) {
	a, b := tcpPair(t)
	defer b.Close() // never read
	s, _ := Client(a, &Config{WriteTimeout: 200 * time.Millisecond})
	defer s.Close()
	var wg sync.WaitGroup
	start := time.Now()
	// Each stream may send its initial window before any ACK: together
	// far more than the socket buffers hold.
	for range 200 {
		st, err := s.OpenStream()
		if err != nil {
			break // the session already ended
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.Write(make([]byte, initialWindow))
		}()
	}
	wg.Wait()
	select {
	case <-s.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("session still open with its peer not reading")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("writers returned after %v", d)
	}
}

// AfterPeerClose runs when the peer closes the stream, when it resets
// it, and when the session ends; not after stop; at once when it is late.
func TestAfterPeerClose(t *testing.T) {
	client, server := pair(t, pairings[0])
	open := func() (*Stream, *Stream) {
		c, err := client.(*Session).OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		sc, err := server.(*Session).AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		return c, sc
	}
	fired := func(sc *Stream) (chan struct{}, func() bool) {
		ch := make(chan struct{})
		return ch, sc.AfterPeerClose(func() { close(ch) })
	}
	wait := func(ch chan struct{}, what string) {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("AfterPeerClose did not run on %s", what)
		}
	}

	c, sc := open()
	ch, _ := fired(sc)
	c.Close()
	wait(ch, "the peer's close")
	late, _ := fired(sc)
	wait(late, "a stream already closed by the peer")

	c, sc = open()
	ch, stop := fired(sc)
	if !stop() {
		t.Fatal("stop did not report the function stopped")
	}
	c.Close()
	io.ReadAll(sc) // EOF: the close arrived
	select {
	case <-ch:
		t.Fatal("AfterPeerClose ran after stop")
	default:
	}

	_, sc = open()
	ch, _ = fired(sc)
	client.Close()
	wait(ch, "the session's end")
}

// A peer that fills a stream's window with one-byte frames does not make
// it take many times the window in memory: small frames are packed.
func TestTinyFramesArePacked(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	s, _ := Server(b, nil)
	defer s.Close()
	go io.Copy(io.Discard, a)
	var h header
	h.encode(typeWindowUpdate, flagSYN, 1, 0)
	frames := append([]byte{}, h[:]...)
	for range initialWindow {
		h.encode(typeData, 0, 1, 1)
		frames = append(append(frames, h[:]...), 'x')
	}
	go a.Write(frames)
	st, err := s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	var chunks, held int
	waitFor(t, func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		chunks, held = len(st.chunks), 0
		for _, c := range st.chunks {
			held += cap(c)
		}
		return st.buffered == initialWindow
	}, func() string { return "the window's worth of frames did not arrive" })
	if held > 2*initialWindow {
		t.Fatalf("%d one-byte frames are held in %d chunks of %d bytes in all, over twice the window", initialWindow, chunks, held)
	}
	got, err := io.ReadAll(io.LimitReader(st, initialWindow))
	if err != nil || len(got) != initialWindow || got[0] != 'x' || got[len(got)-1] != 'x' {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
}

// On a FrameWriter, every frame with a body is one WriteFrame and every
// other frame one Write of its header.
func TestFrameWriterGetsWholeFrames(t *testing.T) {
	a, b := tcpPair(t)
	fc := &frameConn{Conn: a}
	client, _ := Client(fc, nil)
	server, _ := Server(b, nil)
	defer client.Close()
	defer server.Close()
	go func() {
		st, err := server.AcceptStream()
		if err == nil {
			_, _ = io.Copy(st, st)
			st.Close()
		}
	}()
	if err := roundTrip(client, 3*initialWindow); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.bad != nil {
		t.Fatal(fc.bad)
	}
	if fc.whole == 0 || fc.writes == 0 {
		t.Fatalf("%d WriteFrame and %d Write calls: want data frames through WriteFrame, window updates through Write", fc.whole, fc.writes)
	}
}
