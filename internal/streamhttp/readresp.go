package streamhttp

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// readPlainResponse reads the answer most requests get from the API
// server, a final HTTP/1.1 response with one Content-Length and plain
// header lines, as http.ReadResponse would read it, with one copy of the
// head and one array for its values: net/http's header parser was a
// tenth of agentk's user CPU per proxied GET. It looks at the head
// without consuming it first (br.Peek) and declines (false, nothing read)
// whatever is not that shape: an interim (1xx), chunked or unbounded body,
// a HEAD request, a 204 or 304, Connection or Trailer fields, a head
// larger than br's buffer, and anything malformed, which
// http.ReadResponse then reads (or refuses) as before.
// FuzzPlainResponse holds the two to the same result.
func readPlainResponse(br *bufio.Reader, req *http.Request) (*http.Response, bool) {
	if req != nil && req.Method == http.MethodHead {
		return nil, false
	}
	raw, ok := peekHead(br)
	if !ok {
		return nil, false
	}
	// The status line: "HTTP/1.1 200 OK".
	eol := bytes.IndexByte(raw, '\n')
	line := raw[:eol]
	if len(line) < len("HTTP/1.1 200") || line[len(line)-1] != '\r' ||
		string(line[:len("HTTP/1.1 ")]) != "HTTP/1.1 " {
		return nil, false
	}
	code, ok := statusCode(line[len("HTTP/1.1 ") : len(line)-1])
	if !ok || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	// One string for the whole head: the status, keys and values are
	// pieces of it.
	head := string(raw)
	status := head[len("HTTP/1.1 ") : eol-1]
	lines := head[eol+1 : len(head)-2] // up to the blank line's CRLF
	n := strings.Count(lines, "\n")
	h := make(http.Header, n)
	values := make([]string, 0, n)
	length := int64(-1)
	for lines != "" {
		l, rest, _ := strings.Cut(lines, "\n")
		lines = rest
		if len(l) < 2 || l[len(l)-1] != '\r' {
			return nil, false // a bare LF
		}
		k, v, ok := strings.Cut(l[:len(l)-1], ":")
		if !ok || !httpguts.ValidHeaderFieldName(k) {
			return nil, false // also a folded line (it starts with a space)
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, false // also a CR in it
		}
		v = textproto.TrimString(v)
		k = textproto.CanonicalMIMEHeaderKey(k)
		switch k {
		case "Content-Length":
			if length >= 0 {
				return nil, false // twice: ReadResponse decides
			}
			if length, ok = contentLength(v); !ok {
				return nil, false
			}
		case "Transfer-Encoding", "Trailer", "Connection", "Pragma":
			return nil, false
		}
		values = append(values, v)
		if vs, ok := h[k]; ok {
			h[k] = append(vs, v)
		} else {
			h[k] = values[len(values)-1 : len(values) : len(values)]
		}
	}
	if length < 0 {
		return nil, false
	}
	if _, err := br.Discard(len(raw)); err != nil {
		return nil, false // cannot happen: the bytes were peeked
	}
	resp := &http.Response{Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: length, Body: http.NoBody, Request: req}
	if length > 0 {
		resp.Body = &lengthBody{br: br, left: length}
	}
	return resp, true
}

// peekHead returns a response head (through its blank line) from br's
// buffer without consuming it, reading more as needed; false if the head
// does not fit in the buffer, the stream ends first, or a line of it ends
// in a bare LF (then it may be complete already: waiting for more could
// wait for ever).
func peekHead(br *bufio.Reader) ([]byte, bool) {
	n := max(br.Buffered(), 1)
	for {
		b, err := br.Peek(n)
		switch end := headEnd(b); {
		case end > 0:
			return b[:end], true
		case end < 0:
			return nil, false
		}
		if err != nil || n >= br.Size() {
			return nil, false
		}
		n = min(max(br.Buffered(), n)+1, br.Size())
	}
}

// headEnd is the length of the head in b if it ends there with an empty
// CRLF line after CRLF lines, -1 if a line ends in a bare LF, 0 if b
// holds no end of a head yet.
func headEnd(b []byte) int {
	for i, c := range b {
		if c != '\n' {
			continue
		}
		if i == 0 || b[i-1] != '\r' {
			return -1
		}
		switch {
		case i+1 == len(b) || (i+2 == len(b) && b[i+1] == '\r'):
			return 0 // the next line has not arrived
		case b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return 0
}

// statusCode reads "200 OK" (or "200", or "200 ") as ReadResponse does:
// three digits, then a space or the end.
func statusCode(s []byte) (int, bool) {
	if len(s) < 3 || (len(s) > 3 && s[3] != ' ') {
		return 0, false
	}
	code := 0
	for _, c := range s[:3] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, true
}

// contentLength reads a Content-Length of digits only (ReadResponse's
// other spellings are left to it).
func contentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	for i := range len(v) {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// lengthBody is a body of known length read from br, as net/http's: EOF
// with its last bytes, io.ErrUnexpectedEOF if the stream ends before.
type lengthBody struct {
	br   *bufio.Reader
	left int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }
