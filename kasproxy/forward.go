package kasproxy

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"

	"kubetunnel/internal/httpserve"
	"kubetunnel/internal/kubehttp"
)

// forward sends a request that asks for no upgrade to the agent and
// relays the answer as httputil.ReverseProxy does with kas's rewrite
// (the same headers dropped each way, the query as the caller sent it, a
// body of unknown length or an event stream flushed write by write, a
// broken body copy aborting the response), without its deep copy of the
// request, its trace and its second pass over the headers: ReverseProxy's
// own work was about a tenth of kas's user CPU per proxied GET
// (TestForwardAsReverseProxy holds the two to the same result). Upgrades
// still go through ReverseProxy, which splices the connections after the
// 101.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	if r.Method == http.MethodConnect {
		p.fail(w, r, ri, errors.New("client sent unsupported CONNECT request"))
		return
	}
	out := p.outRequest(r, ri)
	if out.Body != nil {
		defer out.Body.Close()
	}
	resp, err := ri.rt.RoundTrip(out)
	if err != nil {
		p.fail(w, r, ri, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body.Close()
		p.fail(w, r, ri, errors.New("the agent switched protocols for a request that asked for no upgrade"))
		return
	}
	kubehttp.RemoveHopHeaders(resp.Header)
	if err := p.modifyResponse(resp, ri); err != nil {
		resp.Body.Close()
		p.fail(w, r, ri, err)
		return
	}
	h := w.Header()
	for k, vs := range resp.Header {
		if old, ok := h[k]; ok {
			h[k] = append(old, vs...)
		} else {
			h[k] = vs
		}
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	flush := flushEachWrite(resp)
	if flush {
		// A watch may send nothing for minutes: from here a caller that
		// leaves must end it (on kas's plain HTTP/1.1 listener, net/http
		// does not watch the caller of a GET). Its caller (kubectl get
		// -w) counts it as started once the head arrives.
		cw := httpserve.WatchClient(r)
		cw.Start()
		defer cw.Stop()
		_ = http.NewResponseController(w).Flush()
	}
	if err := p.copyBody(w, resp.Body, flush); err != nil {
		resp.Body.Close()
		// Not a clean end: the caller sees the response cut short.
		panic(http.ErrAbortHandler)
	}
	resp.Body.Close() // now, not deferred: it fills resp.Trailer
	// Trailers the head did not announce go out with net/http's prefix.
	prefix := ""
	if len(resp.Trailer) != announced {
		prefix = http.TrailerPrefix
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			h.Add(prefix+k, v)
		}
	}
}

// outRequest is the request agentk gets: r's method, body and the
// headers that pass (not hop-by-hop, not the caller's credentials or
// Kas-* headers, no X-Forwarded-*), for the agent's API path, with the
// caller's identity added. r itself is not changed; header values are
// shared, not copied (nothing below edits a value slice in place).
func (p *Proxy) outRequest(r *http.Request, ri *reqInfo) *http.Request {
	// A shallow copy, with the request's facts in its context: a kas
	// peer's transport reads the caller from there (UserFromContext).
	out := r.WithContext(context.WithValue(r.Context(), keyInfo, ri))
	out.URL = &url.URL{Scheme: "http", Host: "agentk", Path: ri.rest, RawQuery: r.URL.RawQuery}
	out.Host = "agentk"
	out.RequestURI = ""
	out.Close = false
	if r.ContentLength == 0 {
		out.Body = nil // nothing to send (as ReverseProxy)
	}
	out.Header = make(http.Header, len(r.Header)+2)
	for k, vs := range r.Header {
		if kubehttp.IsCallerHeader(k) {
			continue
		}
		switch k {
		case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue // the caller's word; kas does not pass it on
		}
		out.Header[k] = vs
	}
	kubehttp.RemoveHopHeaders(out.Header)
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		out.Header["Te"] = []string{"trailers"}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // no Go default
	}
	p.addIdentity(out, ri)
	return out
}

// copyBody copies the agent's answer to the caller, flushing after every
// write if flush; it returns the first error but a clean end.
func (p *Proxy) copyBody(w http.ResponseWriter, body io.Reader, flush bool) error {
	buf := kubehttp.CopyBuffers.Get()
	defer kubehttp.CopyBuffers.Put(buf)
	var flusher http.Flusher
	if flush {
		flusher, _ = w.(http.Flusher)
	}
	for {
		n, rerr := body.Read(buf)
		if rerr != nil && rerr != io.EOF && !errors.Is(rerr, context.Canceled) {
			p.cfg.Logger.Debug("Reading the agent's answer failed", "err", rerr)
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// flushEachWrite says whether a response goes to the caller write by
// write (ReverseProxy's rule): a body of unknown length (watch, logs -f)
// or an event stream.
func flushEachWrite(resp *http.Response) bool {
	if resp.ContentLength == -1 {
		return true
	}
	ct := resp.Header["Content-Type"]
	if len(ct) == 0 || !strings.Contains(strings.ToLower(ct[0]), "event-stream") {
		return false
	}
	mt, _, _ := mime.ParseMediaType(ct[0])
	return mt == "text/event-stream"
}

// isUpgrade says whether a request asks to switch protocols (exec,
// attach, port-forward): Connection names Upgrade.
func isUpgrade(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade")
}
