package realnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kubetunnel/test/realnode/images"
)

// envNamespace names the node namespace a re-executed process runs in.
const envNamespace = "KUBETUNNEL_REALNODE_NETNS"

// InNamespace reports whether this process is the re-executed one, inside
// a node namespace.
func InNamespace() bool { return os.Getenv(envNamespace) != "" }

// Namespace is the name of the node namespace this process runs in (under
// /run/netns), or "".
func Namespace() string { return os.Getenv(envNamespace) }

// Main runs a test package against one single-node cluster. Called from
// TestMain, it creates the node's network namespace and runs the test
// binary again inside it; there it starts the cluster, stores it in *c,
// runs the tests, stops the cluster, and fails the run if goroutines
// leaked or anything of the node was left behind:
//
//	var cluster *realnode.Cluster
//
//	func TestMain(m *testing.M) { os.Exit(realnode.Main(m, &cluster, realnode.Options{})) }
func Main(m *testing.M, c **Cluster, opts Options, leakOpts ...goleak.Option) int {
	// -short (make test-short) leaves the real node out: make test runs it.
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		fmt.Println("realnode: -short: this package's tests need a real node; make test runs them")
		return 0
	}
	if opts.Logf == nil {
		opts.Logf = log.New(os.Stderr, "realnode: ", log.Ltime|log.Lmicroseconds).Printf
	}
	if !InNamespace() {
		code, err := Reexec(context.Background(), os.Args[1:], opts.Logf)
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			return 1
		}
		return code
	}
	leakOpts = append([]goleak.Option{goleak.IgnoreCurrent()}, leakOpts...)
	cl, err := Start(context.Background(), opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: start a single-node cluster: %v\n", err)
		return 1
	}
	*c = cl
	code := m.Run()
	began := time.Now()
	if err := cl.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: stop the cluster: %v\n", err)
		code = 1
	}
	opts.logf("cluster stopped and cleaned up in %s", time.Since(began).Round(time.Millisecond))
	*c = nil
	if code == 0 {
		if err := findLeaks(leakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines leaked by the tests: %v\n", err)
			code = 1
		}
	}
	return code
}

// findLeaks retries goleak.Find for a while: some client libraries wind
// down their connections a second after a clean close.
func findLeaks(opts ...goleak.Option) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

// Reexec runs this program again, with args, inside a new node namespace
// and a fresh node directory, passing SIGINT and SIGTERM on to it. When it
// has ended, however it ended, Reexec removes whatever the node left (its
// containers' processes, shims, mounts, cgroups, directory) and the
// namespace, and returns the program's exit code.
func Reexec(ctx context.Context, args []string, logf func(string, ...any)) (code int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	name, err := createNamespace(ctx)
	if err != nil {
		return 0, err
	}
	removeStaleNodes(logf)
	dir, err := os.MkdirTemp("", "ktn-")
	if err != nil {
		return 0, errors.Join(err, deleteNamespace(name))
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return 0, errors.Join(err, deleteNamespace(name))
	}
	defer func() {
		if cerr := errors.Join(cleanup(dir, cgroupName(dir), filepath.Join(dir, "containerd.sock")), deleteNamespace(name)); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up after the node: %w", cerr))
		}
	}()
	if logf != nil {
		logf("running %s in network namespace %s (%s/%s)", filepath.Base(exe), name, netnsDir, name)
	}
	// Not CommandContext: a cancelled ctx (the caller's Ctrl-C) must let
	// the program stop cleanly rather than kill it.
	cmd := exec.Command("nsenter", append([]string{"--net=" + filepath.Join(netnsDir, name), "--", exe}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envNamespace+"="+name, envDir+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("nsenter: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			// A terminal's Ctrl-C reaches the child too; a signal sent to
			// this process alone is passed on.
			_ = cmd.Process.Signal(s)
		case err := <-waited:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				return exit.ExitCode(), nil
			}
			return 0, err
		}
	}
}

// ownerFile in a node's directory holds the pid of the process that
// cleans up after it (Reexec's).
const ownerFile = "owner.pid"

// removeStaleNodes cleans up after nodes whose owner was killed before it
// could (kill -9 of a test run or the demo): their directories, mounts,
// cgroups and shims. Their namespaces go in createNamespace.
func removeStaleNodes(logf func(string, ...any)) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "ktn-*"))
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || processAlive(pid) {
			continue
		}
		err = cleanup(d, cgroupName(d), filepath.Join(d, "containerd.sock"))
		if logf != nil {
			logf("removed the node left in %s by process %d (gone): %v", d, pid, err)
		}
	}
}

// buildImages builds the images into dir, one process at a time (test
// packages run in parallel and share bin/).
func buildImages(ctx context.Context, root, dir, version string) (*images.Built, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return images.Build(ctx, root, dir, version)
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RunInNamespace runs a test package's tests inside a node namespace of
// their own, for tests that start clusters themselves (the demo's): outside
// one, it re-executes the test binary there; inside, it runs the tests.
func RunInNamespace(m *testing.M) int {
	// -short (make test-short) leaves out what needs a node namespace.
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		fmt.Println("realnode: -short: this package's tests run in a node network namespace; make test runs them")
		return 0
	}
	if InNamespace() {
		return m.Run()
	}
	code, err := Reexec(context.Background(), os.Args[1:], nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	return code
}
