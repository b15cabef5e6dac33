package bench

import (
	"os/exec"
	"testing"
	"time"
)

// startShell starts sh -c script as a child of this process, killed
// when the test ends.
func startShell(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestChildCPU checks that childCPU and pidCPU see the CPU time a busy
// child process spends, and that childCPU names a child it cannot find.
func TestChildCPU(t *testing.T) {
	cmd := startShell(t, "while :; do :; done")
	deadline := time.Now().Add(20 * time.Second)
	for {
		cpu, err := childCPU("sh")
		if err != nil {
			t.Fatal(err)
		}
		if cpu["sh"] >= 100*time.Millisecond {
			byPID, err := pidCPU(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if byPID < cpu["sh"] {
				t.Errorf("pidCPU(%d) = %v after childCPU saw %v", cmd.Process.Pid, byPID, cpu["sh"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a child spinning for 20 s used %v of CPU by /proc, want ≥ 100ms", cpu["sh"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := childCPU("sh", "no-such-child"); err == nil {
		t.Error("childCPU found a child named no-such-child")
	}
}

// TestChildSwitches checks that childPIDs finds a child by its command
// name and that pidSwitches counts the switches of a child that sleeps
// again and again (each sleep blocks its thread once).
func TestChildSwitches(t *testing.T) {
	cmd := startShell(t, "while :; do sleep 0.01; done")
	pids, err := childPIDs("sh")
	if err != nil {
		t.Fatal(err)
	}
	if pids["sh"] != cmd.Process.Pid {
		t.Fatalf("childPIDs(sh) = %d, want %d", pids["sh"], cmd.Process.Pid)
	}
	// The shell waits for each sleep it starts: at least one switch per
	// round, 50 rounds in 0.5 s.
	before, err := pidSwitches(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	after, err := pidSwitches(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 10 {
		t.Errorf("pidSwitches rose by %d over 0.5 s of a shell starting a sleep every 10 ms, want ≥ 10", after-before)
	}
	if _, err := childPIDs("sh", "no-such-child"); err == nil {
		t.Error("childPIDs found a child named no-such-child")
	}
}
