package streamhttp

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptrace"
	"reflect"
	"strings"
	"testing"
)

// TestPlainRequestAsRequestWrite checks that a request writePlainRequest
// writes reads back (as the API server reads it) the same as what
// Request.Write writes for it, and that what it declines is left to
// Request.Write untouched.
func TestPlainRequestAsRequestWrite(t *testing.T) {
	get := func(target string, h http.Header) *http.Request {
		r, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, vs := range h {
			r.Header[k] = vs
		}
		return r
	}
	plain := map[string]*http.Request{
		"kubectl get": get("https://10.0.0.1:6443/api/v1/namespaces/default/pods?limit=500", http.Header{
			"Accept":            {"application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
			"User-Agent":        {"kubectl/v1.34.0 (linux/amd64) kubernetes/abcdef0"},
			"Authorization":     {"Bearer agentk-token"},
			"Impersonate-User":  {"alice"},
			"Impersonate-Group": {"admins", "system:authenticated"},
		}),
		"no user agent":    get("https://api/version", nil),
		"empty user agent": get("https://api/version", http.Header{"User-Agent": {""}}),
		"line breaks and spaces in values": get("https://api/version", http.Header{
			"X-Odd": {"  a\r\nb\nc  "}, "X-Tab": {"\tv\t"}}),
		"headers Request.Write leaves out": get("https://api/version", http.Header{
			"Content-Length": {"5"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}, "Host": {"evil"}}),
		"host field": func() *http.Request {
			r := get("https://10.0.0.1:6443/healthz", nil)
			r.Host = "kubernetes.default.svc"
			return r
		}(),
		"head":         func() *http.Request { r := get("https://api/version", nil); r.Method = http.MethodHead; return r }(),
		"escaped path": get("https://api/api/v1/namespaces/a%2Fb/pods?fieldSelector=spec.nodeName%3Dn1", nil),
	}
	for name, r := range plain {
		var want, got bytes.Buffer
		if err := r.Write(&want); err != nil {
			t.Fatalf("%s: Request.Write: %v", name, err)
		}
		bw := bufio.NewWriter(&got)
		if !writePlainRequest(bw, r) {
			t.Errorf("%s: not written by writePlainRequest", name)
			continue
		}
		bw.Flush()
		w, g := readBack(t, name, want.String()), readBack(t, name, got.String())
		if w.Method != g.Method || w.RequestURI != g.RequestURI || w.Host != g.Host || !reflect.DeepEqual(w.Header, g.Header) {
			t.Errorf("%s: reads back as\n%s %s host %q %v\nwant\n%s %s host %q %v", name,
				g.Method, g.RequestURI, g.Host, g.Header, w.Method, w.RequestURI, w.Host, w.Header)
		}
	}

	declined := map[string]*http.Request{
		"body": func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, "https://api/version", strings.NewReader("x"))
			return r
		}(),
		"post":   func() *http.Request { r := get("https://api/version", nil); r.Method = http.MethodPost; return r }(),
		"delete": func() *http.Request { r := get("https://api/version", nil); r.Method = http.MethodDelete; return r }(),
		"close":  func() *http.Request { r := get("https://api/version", nil); r.Close = true; return r }(),
		"trailer": func() *http.Request {
			r := get("https://api/version", nil)
			r.Trailer = http.Header{"X": nil}
			return r
		}(),
		"zone":         get("https://[fe80::1%25eth0]:6443/version", nil),
		"unicode host": func() *http.Request { r := get("https://api/version", nil); r.Host = "bücher.example"; return r }(),
		"bad host":     func() *http.Request { r := get("https://api/version", nil); r.Host = "a\r\nX-Injected: 1"; return r }(),
		"traced": func() *http.Request {
			r := get("https://api/version", nil)
			return r.WithContext(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{}))
		}(),
	}
	for name, r := range declined {
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		if writePlainRequest(bw, r) {
			t.Errorf("%s: written by writePlainRequest, which is for plain GETs and HEADs", name)
		}
		if bw.Flush(); buf.Len() != 0 {
			t.Errorf("%s: declined but wrote %q", name, buf.String())
		}
	}
}

func readBack(t *testing.T, name, raw string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("%s: %q does not read back: %v", name, raw, err)
	}
	return r
}
