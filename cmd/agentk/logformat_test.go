package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kubetunnel/agentk/agentktest"
	"kubetunnel/api/rpc"
	"kubetunnel/internal/testutil"
)

// startAgentk runs agentk as a process with --log-format json and the
// given --kas-address and token, and returns its combined output.
func startAgentk(t *testing.T, kasAddress, token string) *syncBuffer {
	out, _ := startAgentkProc(t, kasAddress, token)
	return out
}

// startAgentkProc is startAgentk, and also returns a function that sends
// agentk SIGTERM and waits for it to exit.
func startAgentkProc(t *testing.T, kasAddress, token string) (*syncBuffer, func() error) {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	write(t, tokenFile, token)
	cmd := exec.Command(os.Args[0], "--log-format", "json", "--token-file="+tokenFile, "--kas-address="+kasAddress,
		"--server=https://127.0.0.1:1", "--observability-listen-address=127.0.0.1:0")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	var waitErr error
	wait := func() { once.Do(func() { waitErr = <-exited }) }
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		wait()
	})
	return out, func() error {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		wait()
		return waitErr
	}
}

// records parses agentk's JSON log: every line must be a JSON object.
func records(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("--log-format json: a line that is not JSON: %q", l)
		}
		recs = append(recs, r)
	}
	return recs
}

// An agentk that kas refuses retries with backoff, but logs the refusal
// as an ERROR once, not once per retry; when it stops, one more ERROR
// line says how many refusals followed (the summary of the window still
// open).
func TestRefusedLogsOnce(t *testing.T) {
	kas := agentktest.NewKas(t, "the-right-token")
	out, stop := startAgentkProc(t, kas.Address, "a-wrong-token")
	deadline := time.Now().Add(30 * time.Second)
	for len(kas.Hellos()) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("agentk tried %d times in 30s; log:\n%s", len(kas.Hellos()), out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Stop agentk while it waits to retry (no new try for 300 ms), so
	// that every refusal kas counted has reached its log.
	tries := len(kas.Hellos())
	for {
		time.Sleep(300 * time.Millisecond)
		n := len(kas.Hellos())
		if n == tries {
			break
		}
		tries = n
	}
	if err := stop(); err != nil {
		t.Fatalf("agentk after SIGTERM: %v; log:\n%s", err, out.String())
	}
	// A try that began as the signal came is refused but not logged.
	lastTries := len(kas.Hellos())
	var errs []map[string]any
	for _, r := range records(t, out.String()) {
		if r["level"] == "ERROR" {
			errs = append(errs, r)
			if r["msg"] != "kas refused the connection" || r["reason"] != "unknown agent token" {
				t.Errorf("ERROR record: %v", r)
			}
		}
	}
	if len(errs) != 2 {
		t.Fatalf("%d refusals gave %d ERROR lines, want 2 (the first and a summary); log:\n%s", tries, len(errs), out.String())
	}
	if _, ok := errs[0]["repeated"]; ok {
		t.Errorf("the first ERROR line is a summary: %v", errs[0])
	}
	if n, _ := errs[1]["repeated"].(float64); int(n) < tries-1 || int(n) > lastTries-1 || errs[1]["over"] == nil {
		t.Errorf("summary %v: want repeated=%d (refusals after the first) and over", errs[1], tries-1)
	}
}

// wss:// to kas's plain listener: the log says what to change, not only
// Go's "first record does not look like a TLS handshake".
func TestWSSToPlainListenerHint(t *testing.T) {
	kas := agentktest.NewKas(t, "the-token")
	wss := "wss://" + strings.TrimPrefix(kas.Address, "ws://")
	out := startAgentk(t, wss, "the-token")
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, r := range records(t, out.String()) {
			if r["msg"] != "Cannot connect to kas" {
				continue
			}
			hint, _ := r["hint"].(string)
			if !strings.Contains(hint, "kas answered in plain text, not TLS") || !strings.Contains(hint, "Use "+kas.Address) {
				t.Fatalf("hint %q, want it to name %s", hint, kas.Address)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dial error logged in 30s; log:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ws:// to a TLS listener: the log says to use wss://.
func TestWSToTLSListenerHint(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	addr := "ws://" + srv.Listener.Addr().String() + "/"
	out := startAgentk(t, addr, "the-token")
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, r := range records(t, out.String()) {
			if r["hint"] == nil {
				continue
			}
			if hint, _ := r["hint"].(string); !strings.Contains(hint, "use wss://"+srv.Listener.Addr().String()+"/") {
				t.Fatalf("record %v: want a hint to use wss://", r)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dial error logged in 30s; log:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agentk's /metrics says which build runs (agentk_build_info) and, once
// kas has sent the configuration, which agent it is (agentk_agent_info).
func TestBuildAndAgentInfo(t *testing.T) {
	kas := agentktest.NewKas(t, "the-token")
	kas.SetConfig(&rpc.ConfigurationResponse{CommitId: "c0ffee", AgentName: agentktest.AgentName})
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	write(t, tokenFile, "the-token")
	obs := testutil.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "--token-file="+tokenFile, "--kas-address="+kas.Address,
		"--server=https://127.0.0.1:1", "--observability-listen-address="+obs)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	wantBuild := fmt.Sprintf(`agentk_build_info{commit="",go_version="%s",version="v0.1.0-dev"} 1`, runtime.Version())
	wantAgent := `agentk_agent_info{agent="` + agentktest.AgentName + `"} 1`
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + obs + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if strings.Contains(body, wantAgent) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(body, wantAgent) {
		t.Fatalf("/metrics lacks %s after 30s:\n%s\nlog:\n%s", wantAgent, body, out.String())
	}
	if !strings.Contains(body, wantBuild) {
		t.Errorf("/metrics lacks %s", wantBuild)
	}
}
