package wire

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"testing"
)

// FuzzReadRequest feeds agentk's decoder what a peer could send: it must
// refuse or decode without panicking, and what it decodes encodes back to
// the same head.
func FuzzReadRequest(f *testing.F) {
	f.Add(AppendRequest(nil, &RequestHead{Method: "GET", URI: "/api?x=1", Header: http.Header{"A": {"b", "c"}}}))
	f.Add(AppendRequest(nil, &RequestHead{Method: "POST", URI: "/", Header: http.Header{}, BodyLength: -1, Upgrade: true}))
	f.Add(AppendResponse(nil, &ResponseHead{Status: 200, Header: http.Header{"A": {"b"}}, BodyLength: 3}))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadRequest(bufio.NewReaderSize(bytes.NewReader(b), 16))
		if err == nil {
			again, err := ReadRequest(bufio.NewReader(bytes.NewReader(AppendRequest(nil, h))))
			if err != nil || !reflect.DeepEqual(again, h) {
				t.Fatalf("re-encoded head differs: %v", err)
			}
		}
		if len(b) > 0 {
			b[0] = ResponseMagic
		}
		_, _ = ReadResponse(bufio.NewReader(bytes.NewReader(b)))
		_, _ = io.Copy(io.Discard, BodyReader(bufio.NewReader(bytes.NewReader(b)), -1))
	})
}
