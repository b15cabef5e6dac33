package childproc_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/childproc"
)

// A child that ignores SIGTERM is killed after the grace period, together
// with the grandchild it spawned, and its log's tail is readable.
func TestStopKillsTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild.pid")
	p, err := childproc.Start("stubborn", filepath.Join(dir, "log"), "sh", "-c",
		`trap '' TERM; sleep 300 & echo $! > `+pidFile+`; echo one; echo two; wait`)
	if err != nil {
		t.Fatal(err)
	}
	var grandchild int
	testutil.Eventually(t, 10*time.Second, "the child to start its grandchild and log", func() bool {
		b, _ := os.ReadFile(pidFile)
		grandchild, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return grandchild != 0 && strings.Contains(p.LogTail(5), "two")
	})
	if ok, _ := p.Exited(); ok {
		t.Fatal("exited before Stop")
	}
	if got := p.LogTail(1); !strings.HasSuffix(got, "two\n") || strings.Contains(got, "one") {
		t.Errorf("LogTail(1) = %q", got)
	}
	start := time.Now()
	if err := p.Stop(syscall.SIGTERM, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("stopped in %v, before the grace period ended (SIGTERM is trapped)", took)
	}
	if ok, err := p.Exited(); !ok || err == nil {
		t.Errorf("Exited() = %v, %v; want true and the kill", ok, err)
	}
	// The grandchild is killed with the group; its new parent reaps it
	// (until then it is a zombie).
	testutil.Eventually(t, 5*time.Second, "the grandchild gone", func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", grandchild))
		return err != nil || strings.Contains(string(stat), ") Z ")
	})
	if err := p.Stop(syscall.SIGTERM, time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	var nilProc *childproc.Process
	if err := nilProc.Kill(); err != nil {
		t.Errorf("nil Kill: %v", err)
	}
}

// A restarted daemon keeps one log (AppendLog) and gets the extra
// environment; Done closes when it exits.
func TestStartWithAppendsAndSetsEnv(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	for i := range 2 {
		p, err := childproc.StartWith(childproc.Options{AppendLog: true, Env: []string{"RUN=" + strconv.Itoa(i)}}, "echo", log, "sh", "-c", `echo "run $RUN"`)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("sh did not exit")
		}
	}
	if b, _ := os.ReadFile(log); string(b) != "run 0\nrun 1\n" {
		t.Errorf("log %q, want both runs", b)
	}
	p, err := childproc.Start("echo", log, "sh", "-c", "echo fresh")
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if b, _ := os.ReadFile(log); string(b) != "fresh\n" {
		t.Errorf("log %q, want only the new run (Start truncates)", b)
	}
}
