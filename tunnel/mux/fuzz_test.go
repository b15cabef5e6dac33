package mux

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// FuzzSession feeds a server session arbitrary bytes from the network:
// it must end or carry on, never panic, hang or allocate past its window.
func FuzzSession(f *testing.F) {
	var h header
	h.encode(typeWindowUpdate, flagSYN, 1, 0)
	open := append([]byte{}, h[:]...)
	h.encode(typeData, 0, 1, 3)
	f.Add(append(append(open, h[:]...), "abc"...))
	h.encode(typePing, flagSYN, 0, 7)
	f.Add(append([]byte{}, h[:]...))
	h.encode(typeGoAway, 0, 0, 0)
	f.Add(append([]byte{}, h[:]...))
	h.encode(typeData, flagFIN|flagRST, 1, 0)
	f.Add(append(open, h[:]...))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		s, _ := Server(b, &Config{AcceptBacklog: 4})
		go func() {
			for {
				st, err := s.AcceptStream()
				if err != nil {
					return
				}
				go io.Copy(io.Discard, st)
			}
		}()
		go io.Copy(io.Discard, a)
		_, _ = io.Copy(a, bytes.NewReader(in))
		a.Close()
		s.Close()
	})
}
