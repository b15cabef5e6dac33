package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kubetunnel/internal/testpki"
)

// startKas runs kas as a process with args and returns a channel of its
// stderr lines; the process is killed at the end of the test.
func startKas(t *testing.T, args ...string) <-chan string {
	t.Helper()
	return startProcess(t, os.Args[0], []string{runMainEnv + "=1"}, args...)
}

// startProcess runs bin with args (and env added) and returns a channel of
// its stderr lines; the process is killed at the end of the test.
func startProcess(t *testing.T, bin string, env []string, args ...string) <-chan string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
		close(lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return lines
}

// waitJSON reads JSON log lines until one satisfies match; every line must
// be a JSON object.
func waitJSON(t *testing.T, lines <-chan string, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("kas exited before logging %s", what)
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("--log-format json: a line that is not JSON: %q", l)
			}
			if match(rec) {
				return rec
			}
		case <-timeout:
			t.Fatalf("kas did not log %s within 30s", what)
		}
	}
}

// With --log-format json every line kas writes is a JSON object, including
// the TLS handshake errors Go's HTTP server reports through the standard
// library's log package: those become a WARN record with the peer and
// the reason as keys.
func TestLogFormatJSON(t *testing.T) {
	cfgFile := tlsKasConfig(t)
	lines := startKas(t, "--config", cfgFile, "--log-format", "json")
	running := waitJSON(t, lines, "that it runs", func(r map[string]any) bool { return r["msg"] == "kas is running" })
	agentAddr, _ := running["agent_listen"].(string)
	if agentAddr == "" {
		t.Fatalf("kas is running: no agent_listen key: %v", running)
	}
	c, err := net.Dial("tcp", agentAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("\x00\x01\x02\x03\x04\x05 not TLS\r\n"))
	io.Copy(io.Discard, c)
	c.Close()
	rec := waitJSON(t, lines, "the TLS handshake error", func(r map[string]any) bool { return r["msg"] == "TLS handshake failed" })
	t.Logf("record: %v", rec)
	if rec["level"] != "WARN" || !strings.HasPrefix(fmt.Sprint(rec["remote"]), "127.0.0.1:") || rec["err"] == "" {
		t.Errorf("TLS handshake error record: %v, want level WARN with remote and err", rec)
	}
}

func TestLogFormatInvalid(t *testing.T) {
	code, _, errOut := runKas(t, "--config", "x.yaml", "--log-format", "xml")
	if code != 2 || !strings.Contains(errOut, `--log-format "xml": want text or json`) {
		t.Errorf("--log-format xml: exit %d %q", code, errOut)
	}
}

// tlsKasConfig writes a kas config with a TLS agent listener (a
// throwaway CA's certificate for 127.0.0.1) and every listener on a free
// loopback port, and returns its path.
func tlsKasConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, key, _, err := ca.Issue(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "kas.yaml")
	cfg := fmt.Sprintf(`agent:
  listen: {address: "127.0.0.1:0", certificate_file: %s, key_file: %s}
  kubernetes_api: {listen: {address: "127.0.0.1:0"}}
observability: {listen: {address: "127.0.0.1:0"}}
git: {cache_dir: %s}
`, cert, key, filepath.Join(dir, "cache"))
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile
}
