package wire

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// WriteHTTPRequest writes req as a request head frame and its body, then
// flushes, and closes the body (as http.Request.Write does). A body goes
// out raw when req.ContentLength says its length, chunked otherwise.
func WriteHTTPRequest(bw *bufio.Writer, req *http.Request) error {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	h := &RequestHead{Method: method, URI: req.URL.RequestURI(), Header: req.Header, Upgrade: isUpgrade(req.Header)}
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	switch {
	case body == nil:
	case req.ContentLength > 0:
		h.BodyLength = req.ContentLength
	default:
		h.BodyLength = -1
	}
	err := WriteRequest(bw, h)
	if body == nil {
		if err != nil {
			return err
		}
		return bw.Flush()
	}
	if err != nil {
		body.Close()
		return err
	}
	return writeBody(bw, body, h.BodyLength)
}

// ReadHTTPResponse reads a response head frame for req. The Body reads
// the response body from br; a 101's Body is http.NoBody, the caller
// hands the stream to the upgraded protocol.
func ReadHTTPResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	rh, err := ReadResponse(br)
	if err != nil {
		return nil, err
	}
	resp := &http.Response{
		Status:        strconv.Itoa(rh.Status) + " " + http.StatusText(rh.Status),
		StatusCode:    rh.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rh.Header,
		ContentLength: rh.BodyLength,
		Body:          http.NoBody,
		Request:       req,
	}
	switch {
	case rh.Status == http.StatusSwitchingProtocols:
		resp.ContentLength = 0
	case rh.BodyLength == 0:
		if req.Method == http.MethodHead {
			resp.ContentLength = -1
			if cl, err := strconv.ParseInt(rh.Header.Get("Content-Length"), 10, 64); err == nil {
				resp.ContentLength = cl
			}
		}
	default:
		resp.Body = BodyReader(br, rh.BodyLength)
	}
	return resp, nil
}

// writeBody sends a request body of length n (-1: chunked), flushing
// after each chunk (a streamed upload), and closes it.
func writeBody(bw *bufio.Writer, body io.ReadCloser, n int64) error {
	defer body.Close()
	if n >= 0 {
		m, err := io.Copy(bw, io.LimitReader(body, n))
		if err == nil && m < n {
			err = fmt.Errorf("request body: %d bytes of a declared %d", m, n)
		}
		if err != nil {
			return err
		}
		return bw.Flush()
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	for {
		m, rerr := body.Read(*bp)
		if m > 0 {
			if err := WriteChunk(bw, (*bp)[:m]); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			if err := WriteLastChunk(bw); err != nil {
				return err
			}
			return bw.Flush()
		}
		if rerr != nil {
			return rerr
		}
	}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// isUpgrade reports whether a request asks to switch protocols.
func isUpgrade(h http.Header) bool {
	return h.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade")
}
