package mux

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// The frame header, as yamux defines it: version(1) type(1) flags(2)
// stream(4) length(4), big-endian.
const HeaderSize = 12

const protoVersion = 0

// Frame types.
const (
	typeData         = 0
	typeWindowUpdate = 1
	typePing         = 2
	typeGoAway       = 3
)

// Flags.
const (
	flagSYN = 1 << 0
	flagACK = 1 << 1
	flagFIN = 1 << 2
	flagRST = 1 << 3
)

// GoAway codes.
const (
	goAwayNormal   = 0
	goAwayProtoErr = 1
	goAwayInternal = 2
)

// initialWindow is every stream's receive window before any window update:
// both ends assume it, so it is part of the wire format.
const initialWindow = 256 << 10

type header [HeaderSize]byte

func (h *header) encode(typ uint8, flags uint16, id, length uint32) {
	h[0] = protoVersion
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint32(h[4:], id)
	binary.BigEndian.PutUint32(h[8:], length)
}

func (h *header) version() uint8 { return h[0] }
func (h *header) typ() uint8     { return h[1] }
func (h *header) flags() uint16  { return binary.BigEndian.Uint16(h[2:]) }
func (h *header) stream() uint32 { return binary.BigEndian.Uint32(h[4:]) }
func (h *header) length() uint32 { return binary.BigEndian.Uint32(h[8:]) }
func (h *header) String() string {
	return fmt.Sprintf("version %d type %d flags %#x stream %d length %d", h.version(), h.typ(), h.flags(), h.stream(), h.length())
}

// Received payloads are kept in buffers from size-class pools and go
// back once read: a bulk transfer (a list, logs) moves in 32 and 128 KiB
// frames (tunnel/wire), and a fresh buffer for each made the garbage
// collector run every few MB. Frames under smallFrame are copied into
// the stream's last buffer when it has room, so a peer sending tiny
// frames cannot make a window's worth of data take many times its size
// in memory: what a stream holds unread stays under twice its window.
const smallFrame = 16 << 10

var frameClasses = [...]int{16 << 10, 32<<10 + 1024, 64 << 10, 128 << 10}

var framePools [len(frameClasses)]sync.Pool

// getFrameBuf returns a buffer of length n from the smallest class that
// holds it (or, past the largest class, a new one).
func getFrameBuf(n int) []byte {
	for i, c := range frameClasses {
		if n <= c {
			if b, ok := framePools[i].Get().(*[]byte); ok {
				return (*b)[:n]
			}
			return make([]byte, n, c)
		}
	}
	return make([]byte, n)
}

// putFrameBuf takes back a buffer that has been read to its end.
func putFrameBuf(b []byte) {
	for i, c := range frameClasses {
		if cap(b) == c {
			b = b[:0]
			framePools[i].Put(&b)
			return
		}
	}
}
