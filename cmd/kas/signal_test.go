package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kubetunnel/internal/testutil"
)

// runMainEnv set makes the test binary run kas's main with its arguments,
// so a test can signal a real kas process.
const runMainEnv = "KAS_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) != "" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if builtKasDir != "" {
			os.RemoveAll(builtKasDir)
		}
		os.Exit(code)
	}))
}

// The first SIGTERM starts the graceful stop (here a 60 s
// listen_grace_period, with /readyz failing); a second one stops kas at
// once, as an impatient Ctrl-C expects.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "kas.yaml")
	cfg := fmt.Sprintf(`agent:
  listen: {address: "127.0.0.1:0", listen_grace_period: 60s}
  kubernetes_api: {listen: {address: "127.0.0.1:0"}}
observability: {listen: {address: "127.0.0.1:0"}}
git: {cache_dir: %s}
`, filepath.Join(dir, "cache"))
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "--config", cfgFile)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody is waiting for this one
			}
		}
		io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	waitLine := func(what string, re *regexp.Regexp) []string {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l := <-lines:
				if m := re.FindStringSubmatch(l); m != nil {
					return m
				}
			case <-timeout:
				t.Fatalf("kas did not log %s within 30s", what)
			}
		}
	}
	obs := waitLine("that it runs", regexp.MustCompile(`msg="kas is running".* observability_listen=(\S+)`))[1]

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLine("the first signal", regexp.MustCompile(`Stop signal received`))
	// kas logs the signal just before it starts stopping: /readyz turns
	// 503 a moment later and stays so through listen_grace_period (60 s).
	testutil.EventuallyNoError(t, 5*time.Second, "/readyz to say 503 stopping", func() error {
		code, body := testutil.Do(t, "GET", "http://"+obs+"/readyz", nil, nil)
		if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "stopping") {
			return fmt.Errorf("/readyz during listen_grace_period: %d %q, want 503 stopping", code, body)
		}
		return nil
	})

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		t.Logf("kas exited %v after the second signal: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("kas still running 10s after a second SIGTERM (its listen_grace_period is 60s)")
	}
}
