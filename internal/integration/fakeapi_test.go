package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
)

// fakeAPI stands in for a cluster's API server behind agentk: it reports
// what reached it (path, credentials, impersonation, leaked secrets),
// streams a watch on /watch…, echoes an upgraded connection (exec,
// port-forward), and refuses anything but agentk's own token.
type fakeAPI struct {
	*httptest.Server
	// watches counts watches the API server is serving right now.
	watches atomic.Int64
	// clients records the agentk credentials seen (tests give replicas
	// different ones: saToken with a suffix).
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
	// Secrets names headers that carry a caller's token or a kas-to-kas
	// JWT: credentials that must never reach the cluster.
	Secrets []string `json:"secrets"`
}

// callerSecrets are what Secrets looks for.
var callerSecrets = []string{aliceToken, bobToken, haAlice, haBob, "eyJ"}

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
		switch {
		case r.Header.Get("Upgrade") != "":
			// An exec-like upgrade: echo the bytes back.
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
			brw.Flush()
			_, _ = io.Copy(conn, brw)
			return
		case strings.HasPrefix(r.URL.Path, "/watch"):
			f.watches.Add(1)
			defer f.watches.Add(-1)
			every := 50 * time.Millisecond
			if r.URL.Query().Has("silent") {
				every = time.Hour // one event, then nothing: a quiet watch
			}
			testutil.ServeWatch(w, r, every, nil)
			return
		}
		s := seen{Path: r.URL.Path, Query: r.URL.RawQuery, Auth: auth,
			ImpUser: r.Header.Get("Impersonate-User"), ImpGroups: r.Header.Values("Impersonate-Group")}
		for k, vs := range r.Header {
			if strings.HasPrefix(k, "Kas-") {
				s.KasHeaders = append(s.KasHeaders, k)
			}
			for _, v := range vs {
				for _, secret := range callerSecrets {
					if strings.Contains(v, secret) {
						s.Secrets = append(s.Secrets, k)
					}
				}
			}
		}
		n, _ := io.Copy(io.Discard, r.Body)
		s.BodyLen = int(n)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	}))
	t.Cleanup(f.Close)
	return f
}
