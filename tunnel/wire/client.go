package wire

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// MaxInlineBody is the largest request body (by Content-Length) RoundTrip
// writes before it reads the answer; a larger or unknown-length body goes
// out from a goroutine of its own, since agentk may answer before
// reading all of it.
const MaxInlineBody = 64 << 10

const bufSize = 4 << 10

var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writers.Put(bw)
}

// aLongTimeAgo, as a read deadline, wakes a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// RoundTrip sends req on c, a stream of its own, and reads the answer.
// It owns c from then on: c is closed when the response body is closed
// (or read to its end and closed), at once on an error, and when req's
// context is done, which is how agentk learns that the caller went away.
// A 101 answer's Body is an io.ReadWriteCloser: the upgraded stream.
func RoundTrip(c net.Conn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() {
		_ = c.SetReadDeadline(aLongTimeAgo)
		c.Close()
	})
	fail := func(err error) (*http.Response, error) {
		stop()
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
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
	bw := getWriter(c)
	err := WriteRequest(bw, h)
	switch {
	case err != nil || body == nil:
		if err == nil {
			err = bw.Flush()
		}
		putWriter(bw)
		if body != nil {
			body.Close()
		}
	case h.BodyLength > 0 && h.BodyLength <= MaxInlineBody:
		err = writeBody(bw, body, h.BodyLength)
		putWriter(bw)
	default:
		go func() {
			if writeBody(bw, body, h.BodyLength) != nil {
				// The request cannot be completed: agentk sees the stream
				// end mid-body and gives up on it.
				c.Close()
			}
			putWriter(bw)
		}()
	}
	if err != nil {
		return fail(fmt.Errorf("sending the request to agentk: %w", err))
	}
	br := bufio.NewReaderSize(c, bufSize)
	rh, err := ReadResponse(br)
	if err != nil {
		return fail(fmt.Errorf("reading agentk's answer: %w", err))
	}
	resp := &http.Response{
		Status:        strconv.Itoa(rh.Status) + " " + http.StatusText(rh.Status),
		StatusCode:    rh.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rh.Header,
		ContentLength: rh.BodyLength,
		Request:       req,
	}
	switch {
	case rh.Status == http.StatusSwitchingProtocols:
		resp.ContentLength = 0
		resp.Body = &upgraded{Reader: br, c: c, stop: stop}
	case rh.BodyLength == 0:
		resp.Body = http.NoBody
		if method == http.MethodHead {
			resp.ContentLength = -1
			if cl, err := strconv.ParseInt(rh.Header.Get("Content-Length"), 10, 64); err == nil {
				resp.ContentLength = cl
			}
		}
		stop()
		c.Close()
	default:
		resp.Body = &responseBody{Body: BodyReader(br, rh.BodyLength), c: c, stop: stop, ctx: ctx}
	}
	return resp, nil
}

// writeBody sends a request body of length n (-1: chunked) and closes it.
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

// responseBody closes the stream when closed.
type responseBody struct {
	*Body
	c    net.Conn
	stop func() bool
	ctx  context.Context
	once sync.Once
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() != nil {
		err = b.ctx.Err()
	}
	return n, err
}

func (b *responseBody) Close() error {
	b.once.Do(func() {
		b.stop()
		b.c.Close()
	})
	return nil
}

// upgraded is the stream after a 101: reads drain what the head's reader
// buffered first.
type upgraded struct {
	io.Reader
	c    net.Conn
	stop func() bool
}

func (u *upgraded) Write(p []byte) (int, error) { return u.c.Write(p) }

func (u *upgraded) Close() error {
	u.stop()
	return u.c.Close()
}
