package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"kubetunnel/tunnel/mux"
)

// scriptedConn is the kas end of a WebSocket as agentk's dialer sees it:
// it answers the upgrade request with 101 and then serves script as the
// bytes kas sent. It records what agentk writes after the handshake.
type scriptedConn struct {
	script  []byte
	in      *bytes.Reader
	req     bytes.Buffer
	written [][]byte
}

func (s *scriptedConn) Write(p []byte) (int, error) {
	if s.in != nil {
		s.written = append(s.written, append([]byte(nil), p...))
		return len(p), nil
	}
	s.req.Write(p)
	if !bytes.Contains(s.req.Bytes(), []byte("\r\n\r\n")) {
		return len(p), nil
	}
	req, err := http.ReadRequest(bufio.NewReader(&s.req))
	if err != nil {
		return 0, err
	}
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	s.in = bytes.NewReader(append([]byte(resp), s.script...))
	return len(p), nil
}

func (s *scriptedConn) Read(p []byte) (int, error) {
	if s.in == nil {
		return 0, io.ErrNoProgress
	}
	return s.in.Read(p)
}

func (s *scriptedConn) Close() error                     { return nil }
func (s *scriptedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *scriptedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (s *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// dialScripted returns agentk's end of a WebSocket whose peer sends script.
func dialScripted(t testing.TB, script []byte) (*wsConn, *scriptedConn) {
	t.Helper()
	sc := &scriptedConn{script: script}
	d := &Dialer{
		Address: "ws://kas.test/",
		Hello:   Hello{Token: "t", AgentVersion: "v", Protocol: MaxProtocol},
		NetDial: func(context.Context, string, string) (net.Conn, error) { return sc, nil },
		Proxy:   func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	u, _ := ParseAddress(d.Address)
	c, err := d.dialWebSocket(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*wsConn), sc
}

// unmask returns the payload of one client frame that fits in p, or nil.
func unmask(p []byte) (payload []byte, final bool) {
	if len(p) < 6 || p[1]&0x80 == 0 {
		return nil, false
	}
	n, off := uint64(p[1]&0x7f), 2
	switch n {
	case 126:
		n, off = uint64(binary.BigEndian.Uint16(p[2:])), 4
	case 127:
		n, off = binary.BigEndian.Uint64(p[2:]), 10
	}
	key := p[off : off+4]
	body := p[off+4:]
	if uint64(len(body)) != n {
		return nil, false
	}
	out := make([]byte, n)
	for i := range body {
		out[i] = body[i] ^ key[i%4]
	}
	return out, p[0]&0x80 != 0
}

// A frame's header and body (WriteFrame) leave agentk as one WebSocket
// frame in one write; a Write (a frame without a body) is one too.
func TestWSConnOneFramePerYamuxFrame(t *testing.T) {
	c, sc := dialScripted(t, nil)
	body := bytes.Repeat([]byte("x"), 40<<10)
	if err := c.WriteFrame(header(0, uint32(len(body))), body); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write(header(1, 65536)); n != mux.HeaderSize || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if err := c.WriteFrame(header(0, 3), []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if len(sc.written) != 3 {
		t.Fatalf("%d writes on the connection, want 3 (data, window update, data)", len(sc.written))
	}
	var got []byte
	for i, w := range sc.written {
		payload, final := unmask(w)
		if payload == nil || !final {
			t.Fatalf("write %d is not one whole masked frame (%d bytes)", i, len(w))
		}
		got = append(got, payload...)
	}
	want := bytes.Join([][]byte{header(0, uint32(len(body))), body, header(1, 65536), header(0, 3), []byte("abc")}, nil)
	if !bytes.Equal(got, want) {
		t.Error("the byte stream changed")
	}
}

// Payloads of consecutive binary messages, fragmented or not, read as one
// byte stream; a close frame reads as EOF, and keeps doing so.
func TestWSConnRead(t *testing.T) {
	var script []byte
	frame := func(op byte, final bool, payload string) {
		b0 := op
		if final {
			b0 |= 0x80
		}
		script = append(script, b0, byte(len(payload)))
		script = append(script, payload...)
	}
	frame(websocket.BinaryMessage, true, "hello ")
	frame(websocket.BinaryMessage, false, "wor")
	frame(websocket.PingMessage, true, "p") // answered, never seen by the reader
	frame(0, true, "ld")                    // continuation
	frame(websocket.CloseMessage, true, "\x03\xe8")
	c, _ := dialScripted(t, script)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello world" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after close = %v, want EOF", err)
	}
}

// FuzzWSConnRead feeds arbitrary bytes from kas to agentk's WebSocket:
// reading must end in an error, never panic (gorilla panics on a read
// loop that ignores errors), and never yield more bytes than arrived.
func FuzzWSConnRead(f *testing.F) {
	f.Add([]byte{0x82, 3, 'a', 'b', 'c', 0x88, 0})
	f.Add([]byte{0x02, 1, 'a', 0x80, 1, 'b'})
	f.Add([]byte{0x81, 1, 'a'})
	f.Add([]byte{0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x89, 1, 'p', 0x82, 0x80, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _ := dialScripted(t, data)
		n, err := io.Copy(io.Discard, c)
		if n > int64(len(data)) {
			t.Fatalf("read %d bytes from %d", n, len(data))
		}
		if err == nil {
			err = io.EOF
		}
		for range 3 {
			if _, again := c.Read(make([]byte, 16)); again == nil {
				t.Fatalf("read after %v succeeded", err)
			}
		}
	})
}
