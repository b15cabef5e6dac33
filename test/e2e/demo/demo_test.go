package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/internal/testutil/stack"
	"kubetunnel/test/realnode"
)

// The demo's tests run inside a node network namespace of their own
// (realnode re-executes the test binary there), as `make demo` does.
func TestMain(m *testing.M) { os.Exit(realnode.RunInNamespace(m)) }

// make demo keeps working on a real node: the whole setup runs, the example
// workload is applied through GitOps, runs, and serves through kubectl
// port-forward via kas; the banner says who kubectl is in the cluster (what
// kubectl auth whoami through kas says) and works without $EDITOR; and
// Ctrl-C (ctx) stops everything cleanly.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out testutil.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, &out, false, true) }()
	banner := waitBanner(t, &out, done, 6*time.Minute)
	who := kubectlWhoami(t, "kubeconfig-via-kas")
	if !strings.HasPrefix(who, "system:serviceaccount:") {
		t.Errorf("through kas the cluster sees %q, want agentk's service account", who)
	}
	checkBanner(t, banner, who)
	if strings.Contains(banner, "nothing acts on") {
		t.Errorf("the banner on a real node says nothing runs:\n%s", banner)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after Ctrl-C: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the demo did not stop within 2 minutes of Ctrl-C")
	}
	if !strings.Contains(out.String(), "==> Stopping") {
		t.Errorf("no Stopping line:\n%s", out.String())
	}
}

// `make demo` on the light control plane, then Ctrl-C as a terminal sends
// it (SIGINT to make's whole process group): the demo stops, exits 0 and
// make prints no error. The banner says why the Deployment stays 0/1 and
// who kubectl is in the cluster.
func TestMakeDemoCtrlC(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// build and testbin are the test suite's own prerequisites (bin/kas,
	// bin/agentk, bin/etcd, bin/kube-apiserver): -o skips them.
	cmd := exec.Command("make", "--no-print-directory", "-o", "build", "-o", "testbin", "demo", "DEMO_FLAGS=-light")
	cmd.Dir = root
	cmd.Env = notUnderMake()
	var out testutil.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		default:
		}
	}()
	banner := waitBanner(t, &out, done, 5*time.Minute)
	who := kubectlWhoami(t, "kubeconfig-via-kas")
	if who != stack.AgentkUser {
		t.Errorf("through kas the cluster sees %q, want agentk's user %q", who, stack.AgentkUser)
	}
	checkBanner(t, banner, who)
	if !strings.Contains(banner, "the Deployment stays READY 0/1") {
		t.Errorf("the light banner does not say why nginx stays 0/1:\n%s", banner)
	}
	// What a terminal does on Ctrl-C.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
		done <- err
	case <-time.After(2 * time.Minute):
		t.Fatalf("make demo did not stop within 2 minutes of Ctrl-C:\n%s", out.String())
	}
	// make re-raises the SIGINT it got (exit 130, as for any interrupted
	// command); an error of the demo would be a "make: ***" line.
	if o := out.String(); strings.Contains(o, "make: ***") || !strings.Contains(o, "==> Stopping") {
		t.Errorf("make demo after Ctrl-C (%v):\n%s", err, o)
	}
}

// `make testbin` says what it builds and about how long it takes, for
// every binary (what make would do with test/go.mod changed).
func TestMakeTestbinSaysWhat(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "-n", "-W", "test/go.mod", "testbin")
	cmd.Dir = root
	cmd.Env = notUnderMake()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n testbin: %v\n%s", err, out)
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kubelet", "kube-controller-manager", "kube-scheduler"} {
		re := regexp.MustCompile(`(?m)^echo "==> building bin/` + bin + ` from \S+ \([^)]*about \d+ min[^)]*\)"$`)
		if !re.Match(out) {
			t.Errorf("make testbin does not say it builds bin/%s and about how long:\n%s", bin, out)
		}
	}
}

// notUnderMake is this process's environment without what `make test`
// passes its children (flags, job server), so the make a test runs is the
// one a user types.
func notUnderMake() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			env = append(env, kv)
		}
	}
	return env
}

// waitBanner waits until the demo has printed its banner and returns it.
func waitBanner(t *testing.T, out *testutil.Buffer, done chan error, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o := out.String()
		if i := strings.Index(o, "Everything is up."); i >= 0 && strings.Contains(o[i:], "Ctrl-C stops everything.") {
			return o
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the demo ended (%v) before its banner:\n%s", err, o)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner within %v:\n%s", timeout, o)
		}
	}
}

// kubectlWhoami is the user the cluster sees for kubectl with the demo's
// kubeconfig file name (in .demo).
func kubectlWhoami(t *testing.T, kubeconfig string) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "--kubeconfig", filepath.Join(root, ".demo", kubeconfig),
		"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl auth whoami: %v\n%s", err, out)
	}
	return string(out)
}

// checkBanner: the banner says which user kubectl is to kas and to the
// cluster, and its editor line works without $EDITOR set.
func checkBanner(t *testing.T, banner, who string) {
	t.Helper()
	for _, want := range []string{
		"through kas with user " + stack.User + "'s token",
		"the cluster sees agentk's identity, not " + stack.User + ": whoami says " + who + ".",
		"${EDITOR:-vi} ",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}
	if strings.Contains(banner, "$EDITOR ") {
		t.Errorf("the banner has a bare $EDITOR:\n%s", banner)
	}
}

// Where a piece of the real node is missing, make demo says which and
// how to install it before falling back; where all are there, it says
// nothing and runs the real node.
func TestDemoSaysWhyItFallsBack(t *testing.T) {
	if why := fallbackReason(); why != "" {
		t.Fatalf("this machine has every piece, yet: %s", why)
	}
	bin := t.TempDir()
	for _, p := range []string{"ip", "nsenter", "runc", "ctr", "containerd-shim-runc-v2", "busybox"} {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path, filepath.Join(bin, p)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	why := fallbackReason()
	for _, want := range []string{"light control plane", "containerd (package containerd)", "apt-get install -y containerd"} {
		if !strings.Contains(why, want) {
			t.Errorf("the reason does not say %q:\n%s", want, why)
		}
	}
}
