package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinThreads restricts every thread of process pid to cpu. Threads a
// process creates later inherit the mask of the thread that creates them,
// so one pass over /proc/<pid>/task (two, for threads born during the
// first) holds the whole process there.
func pinThreads(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for range 2 {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pin thread %d of process %d to CPU %d: %w", tid, pid, cpu, err)
			}
		}
	}
	return nil
}

// splitCPUs puts this process (client, kas and agentk) on the last CPU
// with GOMAXPROCS 1; startProxyEnv puts the control plane on CPU 0.
func splitCPUs() error {
	if runtime.NumCPU() < 2 {
		return fmt.Errorf("%s=split needs at least 2 CPUs, this machine has %d", cpusEnv, runtime.NumCPU())
	}
	runtime.GOMAXPROCS(1)
	return pinThreads(os.Getpid(), runtime.NumCPU()-1)
}
