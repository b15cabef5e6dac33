package tunnel

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"kubetunnel/tunnel/mux"
)

type recordingConn struct {
	net.Conn
	writes [][]byte
}

func (r *recordingConn) Write(p []byte) (int, error) {
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func header(typ byte, length uint32) []byte {
	h := make([]byte, mux.HeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

// A frame's header and body become one write on a connection that is not
// TCP (TLS); a Write passes through; the byte stream is unchanged.
func TestFrameConnJoins(t *testing.T) {
	rec := &recordingConn{}
	c := newFrameConn(rec)
	if c.vec {
		t.Fatal("only a *net.TCPConn is written with writev")
	}
	var want bytes.Buffer
	frame := func(hdr, body []byte) {
		want.Write(hdr)
		want.Write(body)
		if err := c.WriteFrame(hdr, body); err != nil {
			t.Fatalf("WriteFrame: %v", err)
		}
	}
	frame(header(0, 5), []byte("hello"))
	want.Write(header(1, 65536))
	if n, err := c.Write(header(1, 65536)); n != mux.HeaderSize || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	frame(header(0, 3), []byte("abc"))
	if len(rec.writes) != 3 {
		t.Fatalf("%d writes, want 3 (data, window update, data)", len(rec.writes))
	}
	if len(rec.writes[0]) != 17 || len(rec.writes[2]) != 15 {
		t.Errorf("data frames not joined: %d and %d bytes", len(rec.writes[0]), len(rec.writes[2]))
	}
	if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, want.Bytes()) {
		t.Error("the byte stream changed")
	}
}

// On a TCP connection the header and body go out with writev: the peer
// reads the same bytes, in order, and a large body is not truncated.
func TestFrameConnTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer s.Close()
		b, _ := io.ReadAll(s)
		got <- b
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newFrameConn(conn)
	if !c.vec {
		t.Fatal("a *net.TCPConn should be written with writev")
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	var want bytes.Buffer
	for _, f := range [][2][]byte{{header(0, uint32(len(body))), body}, {header(1, 65536), nil}, {header(0, 3), []byte("abc")}} {
		want.Write(f[0])
		want.Write(f[1])
		var err error
		if f[1] == nil {
			_, err = c.Write(f[0])
		} else {
			err = c.WriteFrame(f[0], f[1])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Errorf("peer read %d bytes, want the %d written, in order", len(b), want.Len())
	}
}
