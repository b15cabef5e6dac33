package tunnel

import (
	"bytes"
	"encoding/binary"
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
	c := &frameCoalescer{Conn: rec}
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
