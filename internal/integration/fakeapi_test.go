package kas

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
)

// fakeAPI stands in for a cluster's API server in the tunnel tests: it
// reports what reached it (path, credentials, impersonation), streams a
// watch on /watch, and refuses anything but agentk's own token.
type fakeAPI struct {
	*httptest.Server
	// watches counts watches the API server is serving right now.
	watches atomic.Int64
	// clients records the agentk credentials seen (tests give replicas
	// different ones).
	clients sync.Map
	// slow, when set, holds requests for /slow until it is closed;
	// slowEntered hears of each.
	slow        chan struct{}
	slowEntered chan string
}

func (f *fakeAPI) clientCount() int {
	n := 0
	f.clients.Range(func(any, any) bool { n++; return true })
	return n
}

// seen is what fakeAPI answers: the request as it arrived.
type seen struct {
	Path       string   `json:"path"`
	Query      string   `json:"query"`
	Auth       string   `json:"auth"`
	ImpUser    string   `json:"impersonate_user"`
	ImpGroups  []string `json:"impersonate_groups"`
	KasHeaders []string `json:"kas_headers"`
	BodyLen    int      `json:"body_len"`
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if !strings.HasPrefix(auth, "Bearer "+saToken) {
			http.Error(w, "not agentk", http.StatusUnauthorized)
			return
		}
		f.clients.Store(auth, true)
		if r.URL.Path == "/slow" && f.slow != nil {
			f.slowEntered <- auth
			<-f.slow
		}
		if strings.HasPrefix(r.URL.Path, "/watch") {
			f.watches.Add(1)
			defer f.watches.Add(-1)
			testutil.ServeWatch(w, r, 50*time.Millisecond, nil)
			return
		}
		s := seen{Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"),
			ImpUser: r.Header.Get("Impersonate-User"), ImpGroups: r.Header.Values("Impersonate-Group")}
		for k := range r.Header {
			if strings.HasPrefix(k, "Kas-") {
				s.KasHeaders = append(s.KasHeaders, k)
			}
		}
		if r.Body != nil {
			n := 0
			buf := make([]byte, 64<<10)
			for {
				m, err := r.Body.Read(buf)
				n += m
				if err != nil {
					break
				}
			}
			s.BodyLen = n
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
	}))
	t.Cleanup(f.Close)
	return f
}
