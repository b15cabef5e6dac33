package agentk

import (
	"bufio"
	"context"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/agentcfg"
	"kubetunnel/tunnel"
	"kubetunnel/tunnel/wire"
)

// processCPU is this process's user+system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkForwardWire is agentk's part of a proxied small GET on
// protocol 2: a request head as kas sends it, read by wire.Serve on one
// stream, forwarded to a TLS API server on the short-request transport,
// the answer written back. The stream is a loopback TCP connection
// standing in for a yamux stream; the API server is in this process, so
// allocs/op, cpu-us/op (this process's CPU time per GET) and the CPU
// profile include its share (net/http's server) and the client's.
func BenchmarkForwardWire(b *testing.B) {
	obj := `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"default","uid":"` + strings.Repeat("0", 36) + `"}}` + strings.Repeat(" ", 600)
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Audit-Id"] = []string{"2b1bd9a3-8c63-4f7e-9a37-4a8f3c7ad0a1"}
		h["Cache-Control"] = []string{"no-cache, private"}
		h["Content-Type"] = []string{"application/json"}
		h["X-Kubernetes-Pf-Flowschema-Uid"] = []string{"5f9a3b3e-7a59-4bd6-9d0b-3c5f2c8b9f10"}
		h["X-Kubernetes-Pf-Prioritylevel-Uid"] = []string{"9d2a1f4e-0f6e-4a57-8c1d-2b7f0e4a6c33"}
		_, _ = io.WriteString(w, obj)
	}))
	api.EnableHTTP2 = true
	api.StartTLS()
	defer api.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw})
	cfg := &agentcfg.Config{}
	f, err := newForwarder(&rest.Config{Host: api.URL, BearerToken: "agentk-token", TLSClientConfig: rest.TLSClientConfig{CAData: ca}},
		func() *agentcfg.Config { return cfg }, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			if _, err := br.Peek(1); err != nil {
				return
			}
			if !wire.Serve(context.Background(), c, br, f) {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	br, bw := bufio.NewReader(c), bufio.NewWriter(c)
	req, _ := http.NewRequest(http.MethodGet, "http://agentk/api/v1/namespaces/default", nil)
	req.Header = http.Header{
		"Accept":                  {"application/json, */*"},
		"User-Agent":              {"kubectl/v1.34.0 (linux/amd64) kubernetes/abcdef0"},
		"Accept-Encoding":         {"gzip"},
		"X-Forwarded-For":         {"127.0.0.1"},
		tunnel.HeaderProxyUser:    {"alice"},
		tunnel.HeaderProxyGroup:   {"admins"},
		"Kubectl-Command":         {"kubectl get"},
		"Kubectl-Session":         {"0d7c1b4e-6a0c-4c54-9a41-1f5f2f3e6b9a"},
		"Impersonate-User":        {"mallory"},
		"Authorization":           {"Bearer caller-token"},
		"X-Remote-Extra-Whatever": {"x"},
	}
	get := func() {
		if err := wire.WriteHTTPRequest(bw, req); err != nil {
			b.Fatal(err)
		}
		resp, err := wire.ReadHTTPResponse(br, req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || n != int64(len(obj)) {
			b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
		}
	}
	get()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for range b.N {
		get()
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
	c.Close()
	<-served
}
