package agentk

import (
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"k8s.io/client-go/rest"

	"kubetunnel/agentcfg"
)

// The API server sees agentk's own token on the short-request transport
// (which sets it on the request in place), never the caller's, from
// --token or from a token file, and the forwarder's request is not
// required to be a copy.
func TestForwarderSendsItsOwnToken(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization")+" proto="+r.Proto)
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  rest.Config
		want string
	}{
		{"static", rest.Config{BearerToken: "static-token"}, "Bearer static-token proto=HTTP/1.1"},
		{"file", rest.Config{BearerTokenFile: tokenFile}, "Bearer from-file proto=HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Host = srv.URL
			cfg.TLSClientConfig = rest.TLSClientConfig{CAData: ca}
			f, err := newForwarder(&cfg, func() *agentcfg.Config { return &agentcfg.Config{} }, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := f.shortRT.(*ownBearer); !ok {
				t.Fatalf("short-request transport is %T, want *ownBearer", f.shortRT)
			}
			mu.Lock()
			got = nil
			mu.Unlock()
			for range 2 {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/namespaces/default", nil)
				req.Header.Set("Authorization", "Bearer caller-token")
				f.rewrite(req, req.URL.Path, nil)
				resp, err := f.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 2 || got[0] != tc.want || got[1] != tc.want {
				t.Errorf("API server saw %q, want %q twice", got, tc.want)
			}
		})
	}
}
