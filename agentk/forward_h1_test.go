package agentk

import (
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/agentcfg"
	"kubetunnel/internal/testutil"
)

// Short requests go to the API server on HTTP/1.1 keep-alive (the faster
// path for a small GET), watches on HTTP/2; once maxShortH1 short
// requests are in flight the next go on HTTP/2 rather than opening more
// connections than client-go keeps idle.
func TestForwarderProtocolPerRequest(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	protos := map[string][]int{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.URL.Path] = append(protos[r.URL.Path], r.ProtoMajor)
		mu.Unlock()
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	f, err := newForwarder(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}},
		func() *agentcfg.Config { return nil }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		resp, err := f.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	count := func(path string) (h1, h2 int) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range protos[path] {
			if p == 1 {
				h1++
			} else {
				h2++
			}
		}
		return h1, h2
	}

	get("/api/v1/namespaces/default")
	get("/api/v1/namespaces/default")
	get("/api/v1/pods?watch=true")
	get("/api/v1/watch/pods")
	if h1, h2 := count("/api/v1/namespaces/default"); h1 != 2 || h2 != 0 {
		t.Errorf("short GETs: %d on HTTP/1.1, %d on HTTP/2; want 2 and 0", h1, h2)
	}
	if h1, h2 := count("/api/v1/pods"); h1 != 0 || h2 != 1 {
		t.Errorf("?watch=true: %d on HTTP/1.1, %d on HTTP/2; want 0 and 1", h1, h2)
	}
	if h1, h2 := count("/api/v1/watch/pods"); h1 != 0 || h2 != 1 {
		t.Errorf("/watch/: %d on HTTP/1.1, %d on HTTP/2; want 0 and 1", h1, h2)
	}

	const n = maxShortH1 + 4
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { get("/slow") })
	}
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("all %d /slow requests at the API server", n), func() bool { h1, h2 := count("/slow"); return h1+h2 == n })
	close(release)
	wg.Wait()
	if h1, h2 := count("/slow"); h1 != maxShortH1 || h2 != n-maxShortH1 {
		t.Errorf("%d at once: %d on HTTP/1.1, %d on HTTP/2; want %d and %d", n, h1, h2, maxShortH1, n-maxShortH1)
	}
	if got := f.shortH1.Load(); got != 0 {
		t.Errorf("%d HTTP/1.1 requests still counted in flight after every body was closed", got)
	}
	get("/after")
	if h1, _ := count("/after"); h1 != 1 {
		t.Error("a short GET after the burst did not go on HTTP/1.1")
	}
}
