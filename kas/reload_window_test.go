package kas

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	tu "kubetunnel/internal/testutil"
)

// An edit to the config file after kas loaded it but before it started
// watching the file is applied by the first polls, not taken as the
// content already running.
func TestReloadSeesEditBeforeWatchStarts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kas.yaml")
	write := func(users string) {
		t.Helper()
		doc := fmt.Sprintf(`agent:
  listen: {address: "127.0.0.1:0"}
  kubernetes_api: {listen: {address: "127.0.0.1:0"}}
observability: {listen: {address: "127.0.0.1:0"}}
git: {cache_dir: %q}
users:
%s`, filepath.Join(dir, "cache"), users)
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	alice := fmt.Sprintf("- {name: alice, token_sha256: [%s]}\n", HashToken(aliceToken))
	bob := fmt.Sprintf("- {name: bob, token_sha256: [%s]}\n", HashToken(bobToken))
	write(alice)
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := tu.NewLogger(t)
	srv, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv.ConfigFile = file
	srv.ConfigPollPeriod = 20 * time.Millisecond
	write(alice + bob) // between load and Run

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(ctx); err != nil {
			t.Errorf("kas Run: %v", err)
		}
	}()
	defer func() { cancel(); <-done }()
	<-srv.Ready()
	statusAs := func(token string) int {
		code, _ := tu.Do(t, "GET", "http://"+srv.Addr("observability").String()+"/api/v1/status", nil,
			map[string]string{"Authorization": "Bearer " + token})
		return code
	}
	if code := statusAs(aliceToken); code != http.StatusOK {
		t.Fatalf("alice: /api/v1/status = %d, want 200", code)
	}
	tu.Eventually(t, 10*time.Second, "bob, added before kas started watching, signs in", func() bool {
		return statusAs(bobToken) == http.StatusOK
	})
}
