package agentk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"kubetunnel/internal/kubehttp"
	"kubetunnel/tunnel/wire"
)

// forward sends a protocol-2 request straight to the API server through
// the transport (client-go's connection pool) and writes the answer as
// it comes: no HTTP/1.1 parse, no reverse-proxy copy of the request. r is
// this stream's own request (wire.Serve built it), so it is edited in
// place. A body of unknown length (watch, logs -f) is flushed after
// every read.
func (f *forwarder) forward(w *wire.ResponseWriter, r *http.Request, id *identity) {
	ctx := r.Context()
	f.rewrite(r, r.URL.Path, id)
	r.RequestURI = ""
	resp, err := f.RoundTrip(r)
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return // kas (the caller) went away
		}
		f.logger.Warn("Request to the API server failed", "path", r.URL.Path, "err", err)
		kubehttp.WriteStatus(w, r, http.StatusBadGateway, fmt.Sprintf("agentk could not reach the cluster's API server: %v", err))
		return
	}
	if resp.StatusCode == http.StatusOK && kubehttp.IsWatch(r) {
		b, ok := f.watches.Track(resp.Body)
		if !ok {
			resp.Body.Close()
			kubehttp.WriteStatus(w, r, http.StatusServiceUnavailable, "agentk is stopping: retry, the request goes to another agentk replica or the restarted one")
			return
		}
		resp.Body = b
	}
	defer resp.Body.Close()
	// The response is this request's own: its header map becomes the
	// answer's rather than being copied.
	if !w.AdoptHeader(resp.Header) {
		h := w.Header()
		for k, vs := range resp.Header {
			h[k] = vs
		}
	}
	h := w.Header()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		f.splice(w, resp)
		return
	}
	kubehttp.RemoveHopHeaders(h)
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	} else {
		h.Del("Content-Length")
	}
	w.WriteHeader(resp.StatusCode)
	stream := resp.ContentLength < 0
	if stream {
		// A watch may send nothing for minutes; its caller (kubectl get
		// -w) counts it as started once the head arrives.
		w.Flush()
	}
	buf := kubehttp.CopyBuffers.Get()
	defer kubehttp.CopyBuffers.Put(buf)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return // kas went away; the stream is lost
			}
			if stream {
				w.Flush()
			}
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			if ctx.Err() == nil {
				f.logger.Warn("Response from the API server cut short", "path", r.URL.Path, "err", rerr)
			}
			// Not a clean end: the stream closes without the body's
			// end, and kas's caller sees the response cut short.
			panic(http.ErrAbortHandler)
		}
	}
}

// splice answers 101 and then copies bytes both ways between kas's
// stream and the API server's upgraded connection (exec, attach,
// port-forward), until either side ends; then both close.
func (f *forwarder) splice(w *wire.ResponseWriter, resp *http.Response) {
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		kubehttp.WriteStatus(w, resp.Request, http.StatusBadGateway, "agentk: the API server's upgraded connection is not writable")
		return
	}
	w.WriteHeader(http.StatusSwitchingProtocols)
	br, c, err := w.Upgraded()
	if err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(backend, br)
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(c, backend)
		done <- struct{}{}
	}()
	<-done
	backend.Close()
	c.Close()
	_ = c.SetReadDeadline(time.Unix(1, 0))
	<-done
}
