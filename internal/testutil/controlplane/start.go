package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/internal/testutil"
)

// readyTimeout bounds how long Start waits for /readyz. A warm start takes
// a few seconds; the slack is for loaded CI machines.
const readyTimeout = 60 * time.Second

// Start runs etcd and kube-apiserver on free loopback ports and returns once
// the API server reports ready. Missing binaries are built first. Call Stop
// to end both processes.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	binDir, err := ensureBinaries(ctx, &opts)
	if err != nil {
		return nil, err
	}
	dir, removeDir := opts.Dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kubetunnel-controlplane-"); err != nil {
			return nil, fmt.Errorf("create control plane directory: %w", err)
		}
		removeDir = true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create control plane directory: %w", err)
	}
	cp, err := start(ctx, opts, binDir, dir)
	if err != nil {
		if removeDir {
			_ = os.RemoveAll(dir)
		}
		return nil, err
	}
	cp.removeDir = removeDir
	return cp, nil
}

func start(ctx context.Context, opts Options, binDir, dir string) (*ControlPlane, error) {
	admin := User{Name: "admin", Token: randomToken(), Groups: []string{"system:masters"}}
	if err := writeTokenFile(filepath.Join(dir, "tokens.csv"), append([]User{admin}, opts.Users...)); err != nil {
		return nil, err
	}
	if err := writeServiceAccountKey(filepath.Join(dir, "sa.key")); err != nil {
		return nil, err
	}
	// Ports are chosen before the processes bind them, so another process
	// may take one in between; such a start is retried with new ports.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		cp, err := startProcesses(ctx, opts, binDir, dir, admin)
		if err == nil {
			return cp, nil
		}
		if attempt == attempts || !errors.Is(err, errPortTaken) {
			return nil, err
		}
		opts.logf("control plane start attempt %d: %v; retrying with new ports", attempt, err)
	}
}

var errPortTaken = errors.New("port already in use")

func startProcesses(ctx context.Context, opts Options, binDir, dir string, admin User) (_ *ControlPlane, retErr error) {
	ports, err := testutil.FreePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, securePort := ports[0], ports[1], ports[2]
	address := opts.Address
	if address == "" {
		address = "127.0.0.1"
	}
	cp := &ControlPlane{
		URL:        fmt.Sprintf("https://%s:%d", address, securePort),
		AdminToken: admin.Token,
		Dir:        dir,
	}
	defer func() {
		if retErr != nil {
			_ = cp.stopProcesses()
		}
	}()
	began := time.Now()

	etcdDataDir := filepath.Join(dir, "etcd")
	// A retry must not find the previous attempt's member data.
	if err := os.RemoveAll(etcdDataDir); err != nil {
		return nil, fmt.Errorf("clean etcd data: %w", err)
	}
	cp.etcd, err = startProcess("etcd", filepath.Join(binDir, "etcd"), filepath.Join(dir, "etcd.log"),
		etcdArgs(etcdDataDir, etcdClient, etcdPeer))
	if err != nil {
		return nil, err
	}
	cp.apiserver, err = startProcess("kube-apiserver", filepath.Join(binDir, "kube-apiserver"), filepath.Join(dir, "kube-apiserver.log"),
		apiserverArgs(dir, address, etcdClient, securePort, opts.APIServerArgs))
	if err != nil {
		return nil, err
	}

	caFile := filepath.Join(dir, "certs", "apiserver.crt")
	if cp.CAData, err = waitReady(ctx, cp, caFile); err != nil {
		return nil, cp.startError(err)
	}
	opts.logf("control plane ready at %s in %s (dir %s)", cp.URL, time.Since(began).Round(time.Millisecond), dir)

	if err := cp.initClients(&rest.Config{
		Host:            cp.URL,
		BearerToken:     admin.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.CAData},
	}); err != nil {
		return nil, err
	}
	if cp.KubeconfigPath, err = cp.KubeconfigFor(admin); err != nil {
		return nil, err
	}
	return cp, nil
}

// startError decorates a start failure with the tail of each log, which is
// where the actual reason (a bad flag, a port clash) is found.
func (c *ControlPlane) startError(err error) error {
	var b strings.Builder
	taken := false
	for _, p := range []*process{c.etcd, c.apiserver} {
		if p == nil {
			continue
		}
		tail := p.logTail(30)
		taken = taken || strings.Contains(tail, "address already in use")
		b.WriteString(tail)
	}
	if taken {
		return fmt.Errorf("start control plane: %w: %w\n%s", errPortTaken, err, b.String())
	}
	return fmt.Errorf("start control plane: %w\n%s", err, b.String())
}
