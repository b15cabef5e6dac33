// Package kubehttp holds what both ends of the Kubernetes API proxy need:
// answering in the API server's own error format, removing headers a
// caller must not be able to pass through, and the copy buffers.
package kubehttp

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
)

// status is the Kubernetes API's error body (metav1.Status), so kubectl
// prints our message instead of a generic one.
type status struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   struct{} `json:"metadata"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason"`
	Code       int      `json:"code"`
}

var reasons = map[int]string{
	http.StatusBadRequest:          "BadRequest",
	http.StatusUnauthorized:        "Unauthorized",
	http.StatusForbidden:           "Forbidden",
	http.StatusNotFound:            "NotFound",
	http.StatusTooManyRequests:     "TooManyRequests",
	http.StatusBadGateway:          "InternalError",
	http.StatusServiceUnavailable:  "ServiceUnavailable",
	http.StatusGatewayTimeout:      "Timeout",
	http.StatusInternalServerError: "InternalError",
}

// WriteStatus answers with a Kubernetes Status object, which client-go
// turns into the error kubectl prints. Discovery, the first thing kubectl
// asks for, is different: client-go reads a discovery error's message only
// from a text body (it prints "unknown" for JSON), and for some codes (503)
// not even then. So a discovery error is text, and carries the message in
// a Warning header too, which kubectl always prints.
func WriteStatus(w http.ResponseWriter, r *http.Request, code int, msg string) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if code == http.StatusTooManyRequests {
		// client-go retries on Retry-After; a full agent may free up.
		w.Header().Set("Retry-After", "1")
	}
	if isDiscovery(r) {
		w.Header().Set("Warning", `299 kas "`+strings.ReplaceAll(msg, `"`, `'`)+`"`)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(msg + "\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(status{
		Kind: "Status", APIVersion: "v1", Status: "Failure",
		Message: msg, Reason: reasons[code], Code: code,
	})
}

func isDiscovery(r *http.Request) bool {
	if r == nil {
		return false
	}
	if strings.Contains(r.Header.Get("Accept"), "apidiscovery.k8s.io") {
		return true
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	if i := strings.Index(p, "/agents/"); i == 0 {
		if j := strings.Index(p[len("/agents/"):], "/"); j >= 0 {
			p = p[len("/agents/")+j:]
		} else {
			p = ""
		}
	}
	return p == "/api" || p == "/apis" || p == "/version" || p == ""
}

// ImpersonationHeader returns the first impersonation header in h, or "":
// Impersonate-*, in any letter case, and spellings a proxy or server on
// the way might read as one (Impersonate_User).
func ImpersonationHeader(h http.Header) string {
	for k := range h {
		if strings.HasPrefix(normalizeKey(k), "impersonate-") {
			return http.CanonicalHeaderKey(k)
		}
	}
	return ""
}

// normalizeKey lowers a header key's ASCII letters and reads "_" as "-",
// as nginx (underscores_in_headers), CGI and some API gateways do, so
// "Impersonate_User" cannot slip past a check for "Impersonate-User".
// Keys are compared this way rather than after http.CanonicalHeaderKey,
// which leaves a key with any byte outside the token alphabet (a space,
// say) as it is: "kAs- x" must not slip past a "Kas-" check.
func normalizeKey(k string) string {
	b := []byte(k)
	for i, c := range b {
		switch {
		case c == '_':
			b[i] = '-'
		case 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// callerHeaderPrefixes are the header families a caller may never pass on:
// impersonation, the Kas-* headers only kas sets (the caller's identity,
// kas's own internal requests), and the front-proxy headers an API server
// configured with --requestheader-* reads the caller's identity from.
var callerHeaderPrefixes = []string{"impersonate-", "kas-", "x-remote-"}

// IsCallerHeader reports whether a caller's header must be removed before
// the request goes on (see StripCallerHeaders).
func IsCallerHeader(k string) bool {
	n := normalizeKey(k)
	switch n {
	case "authorization", "proxy-authorization", "cookie":
		return true
	}
	for _, p := range callerHeaderPrefixes {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// StripCallerHeaders removes what must never pass from a caller to the
// next hop: credentials, any impersonation, the Kas-* headers that only
// kas may set, and front-proxy identity headers (X-Remote-User,
// X-Remote-Group, X-Remote-Extra-*).
func StripCallerHeaders(h http.Header) {
	for k := range h {
		if IsCallerHeader(k) {
			delete(h, k)
		}
	}
}

// CopyBuffers lends the 32 KiB buffers ReverseProxy copies bodies with, so
// a proxied request does not allocate (and the GC collect) one each.
var CopyBuffers httputil.BufferPool = copyBuffers{}

type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte { return *copyBufferPool.Get().(*[]byte) }

func (copyBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		copyBufferPool.Put(&b)
	}
}

// GuardedBody is a server request's body shared by several attempts to
// forward it: it records whether any byte was read (then no other attempt
// may be made), and Close does nothing, because a transport closes the
// body it was given even when it failed before reading it, and the server
// closes the real one when the handler returns.
type GuardedBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (b *GuardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.read.Store(true)
	}
	return n, err
}

// Close does nothing; see GuardedBody.
func (b *GuardedBody) Close() error { return nil }

// Touched reports whether any byte of the body has been read.
func (b *GuardedBody) Touched() bool { return b.read.Load() }

// hopHeaders are a connection's own, not passed on (RFC 9110 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// RemoveHopHeaders drops the hop-by-hop headers of a message, and those
// its Connection header names, as httputil.ReverseProxy does.
func RemoveHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}
