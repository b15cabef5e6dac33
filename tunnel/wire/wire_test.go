package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestHeadRoundTrip(t *testing.T) {
	reqs := []*RequestHead{
		{Method: "GET", URI: "/api/v1/namespaces/default/pods?watch=true&resourceVersion=5", Header: http.Header{
			"Accept": {"application/json"}, "Kas-Proxy-User": {"alice"}, "Kas-Proxy-Group": {"dev", "ops"}}},
		{Method: "POST", URI: "/api/v1/namespaces", Header: http.Header{"Content-Type": {"application/json"}}, BodyLength: 1234},
		{Method: "POST", URI: "/api/v1/namespaces/x/pods/p/exec?command=sh", Header: http.Header{
			"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}}, Upgrade: true},
		{Method: "PUT", URI: "/x", Header: http.Header{}, BodyLength: -1},
	}
	for _, h := range reqs {
		b := AppendRequest(nil, h)
		got, err := ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if !reflect.DeepEqual(got, h) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, h)
		}
	}
	resps := []*ResponseHead{
		{Status: 200, Header: http.Header{"Content-Type": {"application/json"}, "Content-Length": {"2"}}, BodyLength: 2},
		{Status: 101, Header: http.Header{"Upgrade": {"SPDY/3.1"}}},
		{Status: 200, Header: http.Header{}, BodyLength: -1},
	}
	for _, h := range resps {
		b := AppendResponse(nil, h)
		got, err := ReadResponse(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if !reflect.DeepEqual(got, h) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, h)
		}
	}
}

// Decoded header values share one backing array: appending to one field
// must not touch another, past the first 64 fields too.
func TestHeadValuesIndependent(t *testing.T) {
	h := &RequestHead{Method: "GET", URI: "/", Header: http.Header{"Kas-Proxy-Group": {"a", "b", "c"}}}
	for i := range 70 {
		h.Header.Set(fmt.Sprintf("X-F%02d", i), fmt.Sprint(i))
	}
	got, err := ReadRequest(bufio.NewReader(bytes.NewReader(AppendRequest(nil, h))))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Header, h.Header) {
		t.Fatalf("round trip:\n got %v\nwant %v", got.Header, h.Header)
	}
	for i := range 70 {
		k := fmt.Sprintf("X-F%02d", i)
		got.Header[k] = append(got.Header[k], "added")
	}
	for i := range 70 {
		if v := got.Header[fmt.Sprintf("X-F%02d", i)]; len(v) != 2 || v[0] != fmt.Sprint(i) {
			t.Fatalf("X-F%02d = %q after appending to every field: want [%d added]", i, v, i)
		}
	}
}

// A head larger than the reader's buffer is read into a buffer of its own.
func TestLargeHead(t *testing.T) {
	h := &RequestHead{Method: "GET", URI: "/", Header: http.Header{"X-Big": {strings.Repeat("a", 100<<10)}}}
	var buf bytes.Buffer
	bw := bufio.NewWriterSize(&buf, 4096)
	if err := WriteRequest(bw, h); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	got, err := ReadRequest(bufio.NewReaderSize(&buf, 4096))
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("got %v, %v", got != nil, err)
	}
}

func TestHeadRefusals(t *testing.T) {
	frame := func(fields ...[]byte) []byte {
		body := bytes.Join(fields, nil)
		b := []byte{RequestMagic, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(len(body)))
		return append(b, body...)
	}
	str := func(s string) []byte { return append(binary.AppendUvarint(nil, uint64(len(s))), s...) }
	uv := func(n uint64) []byte { return binary.AppendUvarint(nil, n) }
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"too large":         {[]byte{RequestMagic, 0x00, 0x10, 0x00, 0x01}, ErrHeadTooLarge},
		"wrong magic":       {[]byte("GET / HTTP/1.1\r\n"), ErrMalformed},
		"empty":             {frame(), ErrMalformed},
		"short":             {frame([]byte{0}, uv(0), str("GET")), ErrMalformed},
		"string past end":   {frame([]byte{0}, uv(0), uv(100), []byte("GET")), ErrMalformed},
		"huge header count": {frame([]byte{0}, uv(0), str("GET"), str("/"), uv(1<<40)), ErrMalformed},
		"CRLF in value":     {frame([]byte{0}, uv(0), str("GET"), str("/"), uv(1), str("X"), str("a\r\nb")), ErrMalformed},
		"bad name":          {frame([]byte{0}, uv(0), str("GET"), str("/"), uv(1), str("X Y"), str("a")), ErrMalformed},
		"space in URI":      {frame([]byte{0}, uv(0), str("GET"), str("/a b"), uv(0)), ErrMalformed},
		"relative URI":      {frame([]byte{0}, uv(0), str("GET"), str("http://x/"), uv(0)), ErrMalformed},
		"trailing bytes":    {frame([]byte{0}, uv(0), str("GET"), str("/"), uv(0), []byte{1}), ErrMalformed},
		"truncated":         {frame([]byte{0}, uv(0), str("GET"), str("/"), uv(0))[:8], io.ErrUnexpectedEOF},
	} {
		_, err := ReadRequest(bufio.NewReader(bytes.NewReader(tc.in)))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestBodies(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 10_000)
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	bw.Write(payload)
	WriteChunk(bw, payload[:70_000])
	WriteChunk(bw, nil)
	WriteChunk(bw, payload[70_000:])
	WriteLastChunk(bw)
	bw.WriteString("next")
	bw.Flush()
	br := bufio.NewReader(&buf)
	for _, n := range []int64{int64(len(payload)), -1} {
		b := BodyReader(br, n)
		got, err := io.ReadAll(b)
		if err != nil || !bytes.Equal(got, payload) || !b.Done() {
			t.Fatalf("body %d: %v, %d bytes", n, err, len(got))
		}
	}
	if rest, _ := io.ReadAll(br); string(rest) != "next" {
		t.Errorf("read past the body: %q left", rest)
	}

	// Cut short: fixed and chunked bodies say so instead of ending cleanly.
	var short bytes.Buffer
	bw = bufio.NewWriter(&short)
	WriteChunk(bw, payload[:10])
	bw.Flush()
	for _, tc := range []struct {
		in []byte
		n  int64
	}{{payload[:10], 20}, {short.Bytes(), -1}} {
		_, err := io.ReadAll(BodyReader(bufio.NewReader(bytes.NewReader(tc.in)), tc.n))
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("cut-short body %d: %v", tc.n, err)
		}
	}
	_, err := io.ReadAll(BodyReader(bufio.NewReader(bytes.NewReader(binary.AppendUvarint(nil, MaxChunkSize+1))), -1))
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized chunk: %v", err)
	}
}
