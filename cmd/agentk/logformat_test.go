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
	"kubetunnel/internal/testutil/metrics"
)

// startAgentk runs agentk as a process with --log-format json and the
// given --kas-address and token, and returns its combined output.
func startAgentk(t *testing.T, kasAddress, token string) *testutil.Buffer {
	out, _, _ := startAgentkProc(t, kasAddress, token)
	return out
}

// startAgentkProc is startAgentk, and also returns agentk's observability
// address and a function that sends agentk SIGTERM and waits for it to
// exit.
func startAgentkProc(t *testing.T, kasAddress, token string) (out *testutil.Buffer, obs string, stop func() error) {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	write(t, tokenFile, token)
	obs = testutil.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "--log-format", "json", "--token-file="+tokenFile, "--kas-address="+kasAddress,
		"--server=https://127.0.0.1:1", "--observability-listen-address="+obs)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out = &testutil.Buffer{}
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
	return out, obs, func() error {
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
	out, obs, stop := startAgentkProc(t, kas.Address, "a-wrong-token")
	// agentk counts a refusal (agentk_tunnel_connects_total) just before
	// it logs it, and stops only after that: every refusal counted here
	// reaches the log, whichever comes next when SIGTERM arrives.
	var tries int
	testutil.Eventually(t, 30*time.Second, "agentk to count five refusals", func() bool {
		if f, err := metrics.Scrape("http://" + obs + "/metrics"); err == nil {
			tries = int(f.Get("agentk_tunnel_connects_total", "result", "refused"))
		}
		return tries >= 5
	})
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
		t.Errorf("summary %v: want repeated between %d and %d (refusals after the first) and over", errs[1], tries-1, lastTries-1)
	}
}

// wss:// to kas's plain listener: the log says what to change, not only
// Go's "first record does not look like a TLS handshake".
func TestWSSToPlainListenerHint(t *testing.T) {
	kas := agentktest.NewKas(t, "the-token")
	wss := "wss://" + strings.TrimPrefix(kas.Address, "ws://")
	out := startAgentk(t, wss, "the-token")
	r := waitRecord(t, out, func(r map[string]any) bool { return r["msg"] == "Cannot connect to kas" })
	if hint, _ := r["hint"].(string); !strings.Contains(hint, "kas answered in plain text, not TLS") || !strings.Contains(hint, "Use "+kas.Address) {
		t.Fatalf("hint %q, want it to name %s", hint, kas.Address)
	}
}

// waitRecord waits up to 30 s for agentk to log a record that match
// accepts, and returns the first.
func waitRecord(t *testing.T, out *testutil.Buffer, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	testutil.EventuallyNoError(t, 30*time.Second, "a dial error in agentk's log", func() error {
		for _, r := range records(t, out.String()) {
			if match(r) {
				found = r
				return nil
			}
		}
		return fmt.Errorf("log:\n%s", out.String())
	})
	return found
}

// ws:// to a TLS listener: the log says to use wss://.
func TestWSToTLSListenerHint(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	addr := "ws://" + srv.Listener.Addr().String() + "/"
	out := startAgentk(t, addr, "the-token")
	r := waitRecord(t, out, func(r map[string]any) bool { return r["hint"] != nil })
	if hint, _ := r["hint"].(string); !strings.Contains(hint, "use wss://"+srv.Listener.Addr().String()+"/") {
		t.Fatalf("record %v: want a hint to use wss://", r)
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
	out := &testutil.Buffer{}
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
	testutil.EventuallyNoError(t, 30*time.Second, "/metrics to have "+wantAgent, func() error {
		resp, err := http.Get("http://" + obs + "/metrics")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if body = string(b); !strings.Contains(body, wantAgent) {
			return fmt.Errorf("/metrics:\n%s\nlog:\n%s", body, out.String())
		}
		return nil
	})
	if !strings.Contains(body, wantBuild) {
		t.Errorf("/metrics lacks %s", wantBuild)
	}
}
