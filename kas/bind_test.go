package kas

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	tu "kubetunnel/internal/testutil"
)

// A listener that cannot bind (its port is taken) stops kas with an
// error that names it, and the listeners bound before it are closed
// again: no panic, no port left held.
func TestBindFailureClosesTheOthers(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	agentAddr := tu.FreeAddr(t)
	doc := fmt.Sprintf(`agent:
  listen: {address: %q}
  kubernetes_api: {listen: {address: "127.0.0.1:0"}}
observability: {listen: {address: %q}}
git: {cache_dir: %q}
`, agentAddr, taken.Addr().String(), filepath.Join(t.TempDir(), "cache"))
	cfg, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := tu.NewLogger(t)
	srv, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "observability listener on "+taken.Addr().String()) {
		t.Fatalf("Run = %v, want the observability listener's bind error", err)
	}
	// The agent listener, bound first, was closed: its port binds again.
	ln, err := net.Listen("tcp", agentAddr)
	if err != nil {
		t.Fatalf("the agent listener's port is still held after the failed start: %v", err)
	}
	ln.Close()
}
