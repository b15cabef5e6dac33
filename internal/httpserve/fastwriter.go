package httpserve

import (
	"bufio"
	"errors"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// fastWriter is the http.ResponseWriter of a request ServeFast answers.
// It writes what net/http's would for an HTTP/1.1 GET or HEAD without a
// body, byte for byte but the Date (TestFastAnswersAsNetHTTP): the head
// waits for the first 2 KiB of body or a flush; a handler that returns
// before either gets a Content-Length, one that does not set it and
// writes more gets chunked encoding; Date and a sniffed Content-Type are
// added, trailers declared in Trailer or prefixed with
// http.TrailerPrefix end a chunked body.
type fastWriter struct {
	fc     *fastConn
	req    *http.Request
	isHEAD bool
	body   *bufio.Writer // fc's, until finished
	done   bool          // finished: the handler returned

	handlerHeader http.Header
	calledHeader  bool
	header        http.Header // handlerHeader as at WriteHeader, if Header was called

	wroteHeader   bool // WriteHeader was called
	status        int
	contentLength int64 // -1 until known
	written       int64
	handlerDone   bool

	headWritten bool
	chunking    bool
	closeAfter  bool
	trailers    []string
}

func newFastWriter(fc *fastConn, req *http.Request) *fastWriter {
	w := &fastWriter{fc: fc, req: req, isHEAD: req.Method == http.MethodHead,
		handlerHeader: make(http.Header), contentLength: -1, closeAfter: req.Close, body: fc.body}
	w.body.Reset(bodyWriter{w})
	return w
}

func (w *fastWriter) Header() http.Header {
	if w.header == nil && w.wroteHeader && !w.headWritten {
		// Changes from here on must not reach the head, as with net/http.
		w.header = w.handlerHeader.Clone()
	}
	w.calledHeader = true
	return w.handlerHeader
}

func (w *fastWriter) WriteHeader(code int) {
	if w.done {
		return
	}
	if w.wroteHeader {
		w.fc.f.logf("http: superfluous response.WriteHeader call (status %d)", code)
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	bw := w.fc.bw
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		writeStatusLine(bw, code)
		_ = w.handlerHeader.WriteSubset(bw, excludedNoBody)
		bw.WriteString("\r\n")
		_ = bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	if w.calledHeader && w.header == nil {
		w.header = w.handlerHeader.Clone()
	}
	if cl := w.handlerHeader.Get("Content-Length"); cl != "" {
		v, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && v >= 0 {
			w.contentLength = v
		} else {
			w.fc.f.logf("http: invalid Content-Length of %q", cl)
			w.handlerHeader.Del("Content-Length")
		}
	}
}

var excludedNoBody = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}

// errFinished is what a write after the handler returned gets.
var errFinished = errors.New("http: write after the handler returned")

func (w *fastWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errFinished
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	return w.body.Write(p)
}

// Flush and FlushError are what http.Flusher and
// http.ResponseController find.
func (w *fastWriter) Flush() { _ = w.FlushError() }

func (w *fastWriter) FlushError() error {
	if w.done {
		return errFinished
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	err := w.body.Flush()
	if !w.headWritten {
		w.writeHead(nil)
	}
	if e := w.fc.bw.Flush(); err == nil {
		err = e
	}
	return err
}

// SetWriteDeadline is what http.ResponseController finds.
func (w *fastWriter) SetWriteDeadline(t time.Time) error { return w.fc.c.SetWriteDeadline(t) }

// finish ends the response after the handler returned and reports
// whether the connection may carry another request.
func (w *fastWriter) finish() bool {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.body.Flush()
	bw := w.fc.bw
	if !w.headWritten {
		w.writeHead(nil)
	}
	if w.chunking {
		bw.WriteString("0\r\n")
		if t := w.finalTrailers(); t != nil {
			_ = t.Write(bw)
		}
		bw.WriteString("\r\n")
	}
	if err := bw.Flush(); err != nil {
		return false
	}
	if w.closeAfter {
		return false
	}
	// A body shorter than its Content-Length leaves the client waiting
	// for the rest: the connection cannot carry another response.
	return w.isHEAD || w.contentLength == -1 || !bodyAllowedForStatus(w.status) || w.contentLength == w.written
}

// bodyWriter is what the first 2 KiB buffer flushes into: net/http's
// chunkWriter.
type bodyWriter struct{ w *fastWriter }

func (b bodyWriter) Write(p []byte) (int, error) {
	w := b.w
	if !w.headWritten {
		w.writeHead(p)
	}
	if w.isHEAD {
		return len(p), nil
	}
	bw := w.fc.bw
	if w.chunking {
		var hex [16]byte
		bw.Write(strconv.AppendInt(hex[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunking && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.fc.c.Close()
	}
	return n, err
}

// writeHead writes the status line and headers, p being the start of
// the body (all of it if the handler is done): net/http's
// chunkWriter.writeHeader for an HTTP/1.1 GET or HEAD.
func (w *fastWriter) writeHead(p []byte) {
	w.headWritten = true
	header := w.header
	owned := header != nil
	if !owned {
		header = w.handlerHeader
	}
	var exclude map[string]bool
	del := func(k string) {
		if owned {
			header.Del(k)
			return
		}
		if _, ok := header[k]; !ok {
			return
		}
		if exclude == nil {
			exclude = make(map[string]bool)
		}
		exclude[k] = true
	}
	var date, contentLength []byte
	var contentType, connection, transferEncoding string

	trailers := false
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if exclude == nil {
				exclude = make(map[string]bool)
			}
			exclude[k] = true
			trailers = true
		}
	}
	for _, v := range w.header["Trailer"] {
		trailers = true
		for _, f := range strings.Split(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				if k := http.CanonicalHeaderKey(f); httpguts.ValidTrailerHeader(k) {
					w.trailers = append(w.trailers, k)
				}
			}
		}
	}
	te := header.Get("Transfer-Encoding")
	hasTE := te != ""
	_, hasCLHeader := header["Content-Length"]
	if w.handlerDone && !trailers && !hasTE && bodyAllowedForStatus(w.status) && !hasCLHeader && (!w.isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		contentLength = strconv.AppendInt(nil, int64(len(p)), 10)
	}
	hasCL := w.contentLength != -1
	keepAlives := !w.fc.f.isClosing()
	if header.Get("Connection") == "close" || !keepAlives {
		w.closeAfter = true
	}
	code := w.status
	if bodyAllowedForStatus(code) {
		_, haveType := header["Content-Type"]
		if header.Get("Content-Encoding") == "" && !haveType && !hasTE && len(p) > 0 {
			contentType = http.DetectContentType(p)
		}
	} else {
		del("Content-Length")
		del("Transfer-Encoding")
		if code == http.StatusNotModified {
			del("Content-Type")
		}
	}
	if _, ok := header["Date"]; !ok {
		date = time.Now().UTC().AppendFormat(nil, http.TimeFormat)
	}
	if hasCL && hasTE && te != "identity" {
		w.fc.f.logf("http: WriteHeader called with both Transfer-Encoding of %q and a Content-Length of %d", te, w.contentLength)
		del("Content-Length")
		hasCL = false
	}
	switch {
	case w.isHEAD || !bodyAllowedForStatus(code) || code == http.StatusNoContent:
		del("Transfer-Encoding")
	case hasCL:
		del("Transfer-Encoding")
	case hasTE && te == "identity":
		w.closeAfter = true
		del("Transfer-Encoding")
	default:
		w.chunking = true
		transferEncoding = "chunked"
		if hasTE && te == "chunked" {
			del("Transfer-Encoding")
		}
	}
	if w.chunking {
		del("Content-Length")
	}
	if w.closeAfter && (!keepAlives || !httpguts.HeaderValuesContainsToken([]string{w.header.Get("Connection")}, "close")) &&
		!(code == http.StatusSwitchingProtocols && header.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(header["Connection"], "Upgrade")) {
		del("Connection")
		connection = "close"
	}

	bw := w.fc.bw
	writeStatusLine(bw, code)
	_ = w.header.WriteSubset(bw, exclude)
	if date != nil {
		bw.WriteString("Date: ")
		bw.Write(date)
		bw.WriteString("\r\n")
	}
	if contentLength != nil {
		bw.WriteString("Content-Length: ")
		bw.Write(contentLength)
		bw.WriteString("\r\n")
	}
	for _, kv := range [...][2]string{{"Content-Type", contentType}, {"Connection", connection}, {"Transfer-Encoding", transferEncoding}} {
		if kv[1] != "" {
			bw.WriteString(kv[0])
			bw.WriteString(": ")
			bw.WriteString(kv[1])
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
}

// finalTrailers are the trailers a chunked body ends with: the declared
// ones and those set with http.TrailerPrefix.
func (w *fastWriter) finalTrailers() http.Header {
	var t http.Header
	for k, vv := range w.handlerHeader {
		if kk, found := strings.CutPrefix(k, http.TrailerPrefix); found {
			if t == nil {
				t = make(http.Header)
			}
			t[kk] = vv
		}
	}
	for _, k := range w.trailers {
		if t == nil {
			t = make(http.Header)
		}
		for _, v := range w.handlerHeader[k] {
			t.Add(k, v)
		}
	}
	return t
}

func writeStatusLine(bw interface {
	WriteString(string) (int, error)
}, code int) {
	text := http.StatusText(code)
	if text == "" {
		bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " status code " + strconv.Itoa(code) + "\r\n")
		return
	}
	bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n")
}

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199, status == http.StatusNoContent, status == http.StatusNotModified:
		return false
	}
	return true
}
