package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
)

// A client that fails the TLS handshake again and again (a scanner, a
// ws:// agentk) gives one WARN line, and when kas stops one summary line
// with the count, not a line per connection.
func TestRepeatedFailureSummarized(t *testing.T) {
	cfgFile := tlsKasConfig(t)
	cmd := exec.Command(os.Args[0], "--config", cfgFile, "--log-format", "json")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var out testutil.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	logged := func(match func(map[string]any) bool) []map[string]any {
		var recs []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(l), &r) == nil && match(r) {
				recs = append(recs, r)
			}
		}
		return recs
	}
	isHandshake := func(r map[string]any) bool { return r["msg"] == "TLS handshake failed" }
	var agentAddr string
	testutil.EventuallyNoError(t, 30*time.Second, "kas to start", func() error {
		if recs := logged(func(r map[string]any) bool { return r["msg"] == "kas is running" }); len(recs) > 0 {
			agentAddr, _ = recs[0]["agent_listen"].(string)
			return nil
		}
		return fmt.Errorf("log:\n%s", out.String())
	})
	const tries = 6
	for i := range tries {
		c, err := net.Dial("tcp", agentAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("\x00\x01\x02\x03\x04\x05 not TLS\r\n"))
		// net/http logs a failed handshake before it closes the
		// connection: once this read ends, kas has logged the failure (or
		// counted it in its summary). Its stderr reaches out a moment
		// later, through a pipe.
		io.Copy(io.Discard, c)
		c.Close()
		if i == 0 {
			testutil.Eventually(t, 10*time.Second, "the first TLS handshake failure in the log", func() bool { return len(logged(isHandshake)) == 1 })
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("kas after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kas did not stop within 30s of SIGTERM:\n%s", out.String())
	}
	recs := logged(isHandshake)
	if len(recs) != 2 {
		t.Fatalf("%d TLS handshake failures gave %d lines, want 2 (the first and a summary):\n%s", tries, len(recs), out.String())
	}
	if _, ok := recs[0]["repeated"]; ok || recs[0]["level"] != "WARN" {
		t.Errorf("first line %v: want a WARN without repeated", recs[0])
	}
	if n, _ := recs[1]["repeated"].(float64); n != tries-1 || recs[1]["level"] != "WARN" || recs[1]["over"] == nil {
		t.Errorf("summary %v: want WARN repeated=%d and over", recs[1], tries-1)
	}
}
