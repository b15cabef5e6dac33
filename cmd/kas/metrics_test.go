package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// writeKasConfig writes a minimal kas config on loopback ports plus extra;
// obs is added to the observability section.
func writeKasConfig(t *testing.T, obs, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "kas.yaml")
	cfg := fmt.Sprintf(`agent:
  listen: {address: "127.0.0.1:0"}
  kubernetes_api: {listen: {address: "127.0.0.1:0"}}
observability: {listen: {address: "127.0.0.1:0"}%s}
git: {cache_dir: %s}
`, obs, filepath.Join(dir, "cache")) + extra
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile
}

// builtKasDir holds builtKas's binary, removed when the tests end.
var builtKasDir string

// builtKas is bin/kas as `go build` links it, with the version and commit
// a release build sets; built once per test run.
var builtKas = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "kas-bin-")
	if err != nil {
		return "", err
	}
	builtKasDir = dir
	bin := filepath.Join(dir, "kas")
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags",
		"-X kubetunnel/version.Version="+testVersion+" -X kubetunnel/version.Commit="+testCommit, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

const (
	testVersion = "v9.8.7-test"
	testCommit  = "0123456789abcdef0123456789abcdef01234567"
)

// startKasObs starts the built kas with cfgFile and returns its
// observability address.
func startKasObs(t *testing.T, cfgFile string) string {
	t.Helper()
	bin, err := builtKas()
	if err != nil {
		t.Fatal(err)
	}
	lines := startProcess(t, bin, nil, "--config", cfgFile, "--log-format", "json")
	rec := waitJSON(t, lines, "that it runs", func(r map[string]any) bool { return r["msg"] == "kas is running" })
	go func() {
		for range lines { // keep the pipe drained
		}
	}()
	return rec["observability_listen"].(string)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A single kas without Redis: /metrics says which build runs, and does not
// show kas_agent_registry_up (a 0 there would read as a Redis outage).
func TestBuildInfoAndNoRegistryGaugeWithoutRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kas binary: not in -short")
	}
	obs := startKasObs(t, writeKasConfig(t, "", ""))
	code, body := get(t, "http://"+obs+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	want := fmt.Sprintf(`kas_build_info{commit="%s",go_version="%s",version="%s"} 1`, testCommit, runtime.Version(), testVersion)
	if !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if strings.Contains(body, "kas_agent_registry_up") {
		t.Errorf("/metrics shows kas_agent_registry_up without Redis")
	}
	if !strings.Contains(body, "kas_connected_agents") {
		t.Errorf("/metrics lost the server's own metrics")
	}
}
