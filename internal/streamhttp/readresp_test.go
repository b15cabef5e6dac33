package streamhttp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"testing"
)

// apiAnswer is a small GET's answer as kube-apiserver sends it.
const apiAnswer = "HTTP/1.1 200 OK\r\n" +
	"Audit-Id: 2b1bd9a3-8c63-4f7e-9a37-4a8f3c7ad0a1\r\n" +
	"Cache-Control: no-cache, private\r\n" +
	"Content-Type: application/json\r\n" +
	"X-Kubernetes-Pf-Flowschema-Uid: 5f9a3b3e-7a59-4bd6-9d0b-3c5f2c8b9f10\r\n" +
	"X-Kubernetes-Pf-Prioritylevel-Uid: 9d2a1f4e-0f6e-4a57-8c1d-2b7f0e4a6c33\r\n" +
	"Date: Sat, 05 Dec 2026 07:00:00 GMT\r\n" +
	"Content-Length: 17\r\n" +
	"\r\n" +
	`{"kind":"Status"}`

// TestPlainResponseTakesAPIAnswers: the API server's usual answers are
// read by readPlainResponse (else its speed-up is lost without a sign),
// and the shapes it leaves to http.ReadResponse are left with nothing
// read.
func TestPlainResponseTakesAPIAnswers(t *testing.T) {
	get, _ := http.NewRequest(http.MethodGet, "https://api/api/v1/namespaces/default", nil)
	head, _ := http.NewRequest(http.MethodHead, "https://api/api/v1/namespaces/default", nil)
	for _, raw := range []string{
		apiAnswer,
		"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nVary: Accept\r\nVary: Origin\r\nContent-Length: 0\r\n\r\n",
	} {
		if _, ok := readPlainResponse(bufio.NewReader(bytes.NewReader([]byte(raw))), get); !ok {
			t.Errorf("declined %q", raw)
		}
	}
	for _, c := range []struct {
		raw string
		req *http.Request
	}{
		{apiAnswer, head},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", get},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", get},
		{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", get},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\n\n{}", get},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", get},
		{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}", get},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", get},
		{"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n", get},
	} {
		br := bufio.NewReader(bytes.NewReader([]byte(c.raw)))
		if _, ok := readPlainResponse(br, c.req); ok {
			t.Errorf("%s: took %q", c.req.Method, c.raw)
		}
		if rest, _ := io.ReadAll(br); string(rest) != c.raw {
			t.Errorf("declined %q but consumed some: %q left", c.raw, rest)
		}
	}
}

// FuzzPlainResponse: whatever readPlainResponse reads, http.ReadResponse
// reads the same (status, header, length, body, the error at a cut body,
// the bytes left after it); what it declines, it leaves unread.
func FuzzPlainResponse(f *testing.F) {
	for _, s := range []string{
		apiAnswer,
		apiAnswer[:len(apiAnswer)-5],
		apiAnswer + "HTTP/1.1 200 OK\r\n",
		"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 999 Odd\r\nContent-Length:1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nX: \t a b \t\r\nx-lower: 1\r\nX: 2\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 01\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Key: 1\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: empty\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\n\n{}",
		"HTTP/1.1 200 OK\r\nX: 1\r\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(apiAnswer), true)
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		req, _ := http.NewRequest(method, "https://api/x", nil)
		br := bufio.NewReaderSize(bytes.NewReader(raw), bufSize)
		got, ok := readPlainResponse(br, req)
		if !ok {
			if rest, _ := io.ReadAll(br); !bytes.Equal(rest, raw) {
				t.Fatalf("declined but consumed: %q left of %q", rest, raw)
			}
			return
		}
		want, err := http.ReadResponse(bufio.NewReaderSize(bytes.NewReader(raw), bufSize), req)
		if err != nil {
			t.Fatalf("took %q, which http.ReadResponse refuses: %v", raw, err)
		}
		// Compare everything but the bodies (and Request, the same).
		if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
			got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
			got.ContentLength != want.ContentLength || got.Close != want.Close ||
			!reflect.DeepEqual(got.Header, want.Header) || !reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) ||
			!reflect.DeepEqual(got.Trailer, want.Trailer) || (got.Body == http.NoBody) != (want.Body == http.NoBody) {
			t.Fatalf("%q:\ngot  %+v\nwant %+v", raw, got, want)
		}
		// want's body reads from its own reader: compare what each body
		// gives, its error, and what is left after it on each reader.
		wbr := bufio.NewReaderSize(bytes.NewReader(raw), bufSize)
		want, _ = http.ReadResponse(wbr, req)
		gb, gerr := io.ReadAll(got.Body)
		wb, werr := io.ReadAll(want.Body)
		if !bytes.Equal(gb, wb) || !errors.Is(gerr, werr) && !(gerr == nil && werr == nil) {
			t.Fatalf("%q: body %q %v, want %q %v", raw, gb, gerr, wb, werr)
		}
		grest, _ := io.ReadAll(br)
		wrest, _ := io.ReadAll(wbr)
		if !bytes.Equal(grest, wrest) {
			t.Fatalf("%q: left %q, want %q", raw, grest, wrest)
		}
	})
}
