package check

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubetunnel/internal/testutil/redisserver"
	"kubetunnel/kas"
)

// kas check reaches Redis and reads the secret, and says which fails.
func TestCheckReplicas(t *testing.T) {
	srv := redisserver.Start(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := kas.ParseConfig([]byte("git:\n  cache_dir: " + t.TempDir() + "\nredis:\n  address: " + srv.Addr + "\n  dial_timeout: 1s\nprivate_api:\n  listen:\n    address: 127.0.0.1:8155\n  authentication_secret_file: " + secret + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if !Run(context.Background(), cfg, &out) {
		t.Fatalf("check failed:\n%s", out.String())
	}
	for _, want := range []string{"ok    redis " + srv.Addr + " (PING answered)", "ok    private_api advertised address http://127.0.0.1:8155", "ok    private_api.authentication_secret_file"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	srv.Kill()
	out.Reset()
	if Run(context.Background(), cfg, &out) || !strings.Contains(out.String(), "FAIL  redis "+srv.Addr+": ") {
		t.Errorf("check with Redis down:\n%s", out.String())
	}
}
