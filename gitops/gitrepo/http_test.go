package gitrepo

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"kubetunnel/internal/testutil"
)

// gitServer serves source repositories over https with git http-backend
// and requires a token, as GitLab does.
type gitServer struct {
	*httptest.Server
	token      atomic.Pointer[string]
	advertised atomic.Int32 // info/refs requests that passed authentication
	// gate, when set, holds info/refs requests until it is closed.
	gate atomic.Pointer[chan struct{}]
}

func newGitServer(t *testing.T, root, token string) *gitServer {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git is required (the https test serves with git http-backend): %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	s := &gitServer{}
	s.token.Store(&token)
	cgiHandler := &cgi.Handler{
		Path: backend,
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, password, ok := r.BasicAuth()
		if !ok || user != "oauth2" || password != *s.token.Load() {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/info/refs") {
			s.advertised.Add(1)
			if gate := s.gate.Load(); gate != nil {
				<-*gate
			}
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// caFile writes the server's certificate for Repository.CAFile.
func (s *gitServer) caFile(t *testing.T) string {
	return writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})))
}

func TestHTTPS(t *testing.T) {
	src := newSource(t)
	commit := src.commit(map[string]string{"a.yaml": "1"})
	srv := newGitServer(t, filepath.Dir(src.dir), "token-1")
	tokenFile := writeFile(t, "token", "token-1\n")
	c := newCache(t, Repository{
		ID:        "r",
		URL:       srv.URL + "/" + filepath.Base(src.dir),
		TokenFile: tokenFile,
		CAFile:    srv.caFile(t),
	})

	if !fetch(t, c, "r") {
		t.Fatal("first fetch: changed = false")
	}
	if got := resolve(t, c, "r", Ref{}); got != commit {
		t.Errorf("default branch = %s, want %s", got, commit)
	}
	if got := readFile(t, c, "r", commit, "a.yaml"); got != "1" {
		t.Errorf("a.yaml = %q", got)
	}

	// An unchanged repository costs one request.
	before := srv.advertised.Load()
	fetch(t, c, "r")
	if n := srv.advertised.Load() - before; n != 1 {
		t.Errorf("unchanged fetch made %d info/refs requests, want 1", n)
	}

	// A rotated token is read from its file on the next fetch.
	rotated := "token-2"
	srv.token.Store(&rotated)
	_, err := c.Fetch(context.Background(), "r")
	if err == nil || strings.Contains(err.Error(), "token-1") || !strings.HasPrefix(err.Error(), `repository "r": `) ||
		!strings.Contains(err.Error(), "check the credentials in "+tokenFile) {
		t.Fatalf("fetch with the old token: %v", err)
	}
	t.Logf("fetch with the old token: %v", err)
	if err := os.WriteFile(tokenFile, []byte("token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	fetch(t, c, "r")
}

// Callers that arrive during a fetch share it rather than queue their own.
func TestConcurrentFetchShared(t *testing.T) {
	src := newSource(t)
	src.commit(map[string]string{"a.yaml": "1"})
	srv := newGitServer(t, filepath.Dir(src.dir), "token")
	c := newCache(t, Repository{
		ID:        "r",
		URL:       srv.URL + "/" + filepath.Base(src.dir),
		TokenFile: writeFile(t, "token", "token"),
		CAFile:    srv.caFile(t),
	})
	gate := make(chan struct{})
	srv.gate.Store(&gate)

	const callers = 4
	results := make(chan error, callers)
	var changedCount atomic.Int32
	var wg sync.WaitGroup
	call := func() {
		changed, err := c.Fetch(context.Background(), "r")
		if changed {
			changedCount.Add(1)
		}
		results <- err
	}
	wg.Go(call)
	testutil.Eventually(t, waitTimeout, "the first fetch to reach the server", func() bool { return srv.advertised.Load() == 1 })
	for range callers - 1 {
		wg.Go(call)
	}
	testutil.Eventually(t, waitTimeout, "the other callers to wait", func() bool { return c.waitingFetches("r") == callers-1 })
	close(gate)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Error(err)
		}
	}
	// One fetch: its list of refs and the fetch proper.
	if n := srv.advertised.Load(); n != 2 {
		t.Errorf("%d info/refs requests, want 2", n)
	}
	if n := changedCount.Load(); n != callers {
		t.Errorf("%d callers saw the change, want %d", n, callers)
	}
}

// A caller whose context ends stops waiting; the others still get the
// fetch.
func TestFetchCancelWhileWaiting(t *testing.T) {
	src := newSource(t)
	src.commit(map[string]string{"a.yaml": "1"})
	srv := newGitServer(t, filepath.Dir(src.dir), "token")
	c := newCache(t, Repository{
		ID:        "r",
		URL:       srv.URL + "/" + filepath.Base(src.dir),
		TokenFile: writeFile(t, "token", "token"),
		CAFile:    srv.caFile(t),
	})
	gate := make(chan struct{})
	srv.gate.Store(&gate)

	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := c.Fetch(context.Background(), "r"); err != nil {
			t.Error(err)
		}
	})
	testutil.Eventually(t, waitTimeout, "the first fetch to reach the server", func() bool { return srv.advertised.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctx, "r")
		errc <- err
	}()
	testutil.Eventually(t, waitTimeout, "the second caller to wait", func() bool { return c.waitingFetches("r") == 1 })
	cancel()
	if err := <-errc; err == nil {
		t.Error("cancelled Fetch succeeded")
	}
	close(gate)
	wg.Wait()
}
