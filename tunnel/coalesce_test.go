package tunnel

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
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
	h := make([]byte, yamuxHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

// A data frame's header and body become one write; other frames pass
// through; the byte stream is unchanged.
func TestFrameCoalescer(t *testing.T) {
	rec := &recordingConn{}
	c := newFrameCoalescer(rec)
	var want bytes.Buffer
	write := func(p []byte) {
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	write(header(yamuxTypeData, 5))
	write([]byte("hello"))
	write(header(1, 65536)) // window update: no body follows
	write(header(yamuxTypeData, 0))
	write(header(yamuxTypeData, 3))
	write([]byte("abc"))
	if len(rec.writes) != 4 {
		t.Fatalf("%d writes, want 4 (data, window update, empty data, data)", len(rec.writes))
	}
	if len(rec.writes[0]) != 17 || len(rec.writes[3]) != 15 {
		t.Errorf("data frames not joined: %d and %d bytes", len(rec.writes[0]), len(rec.writes[3]))
	}
	if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, want.Bytes()) {
		t.Error("the byte stream changed")
	}
}

// On a TCP connection the header and body go out with writev: the peer
// reads the same bytes, in order, and a large body is not truncated.
func TestFrameCoalescerTCP(t *testing.T) {
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
	c := newFrameCoalescer(conn)
	if !c.vec {
		t.Fatal("a *net.TCPConn should be written with writev")
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	var want bytes.Buffer
	for _, p := range [][]byte{header(yamuxTypeData, uint32(len(body))), body, header(1, 65536), header(yamuxTypeData, 3), []byte("abc")} {
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	conn.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Errorf("peer read %d bytes, want the %d written, in order", len(b), want.Len())
	}
}
