package realnode

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil/childproc"
	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/test/realnode/images"
)

// NodeName is the name the kubelet registers.
const NodeName = "kubetunnel-node"

// startTimeout bounds a cluster's start once the binaries and images are
// built: ~10 s on an idle 2-core machine, much more on a busy one.
const startTimeout = 3 * time.Minute

// nodeBinaries are built from the module graph (test/go.mod tool lines) into
// the bin directory when missing, like the control plane's.
var nodeBinaries = []controlplane.Binary{
	{Name: "kube-controller-manager", Package: "k8s.io/kubernetes/cmd/kube-controller-manager"},
	{Name: "kube-scheduler", Package: "k8s.io/kubernetes/cmd/kube-scheduler"},
	{Name: "kubelet", Package: "k8s.io/kubernetes/cmd/kubelet"},
}

// Options configures Start.
type Options struct {
	// BinDir holds the Kubernetes binaries. Default: <repo root>/bin.
	BinDir string
	// Logf receives progress messages. Default: discard.
	Logf func(format string, args ...any)
	// Users are extra static-token users of the API server.
	Users []controlplane.User
	// Version stamps agentk and kas in the images. Default: `git describe`,
	// as make build does.
	Version string
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Cluster is a running single-node cluster.
type Cluster struct {
	// CP is the control plane: URL, admin clientset and kubeconfig.
	CP *controlplane.ControlPlane
	// Images are the imported images' archives and the static agentk and
	// kas binaries inside them.
	Images *images.Built
	// Dir holds everything the node made; Stop removes it.
	Dir string

	cgroup, socket                      string
	containerd, kcm, scheduler, kubelet *childproc.Process
}

// envDir names the node's directory, made by Reexec.
const envDir = "KUBETUNNEL_REALNODE_DIR"

// Start runs a single-node cluster. It must run inside the node's network
// namespace: use Main in a test package, or Reexec in a program. Missing
// Kubernetes binaries are built first; the images are rebuilt (cheap
// with a warm build cache) and imported every time.
func Start(ctx context.Context, opts Options) (_ *Cluster, retErr error) {
	if os.Getenv(envNamespace) == "" {
		return nil, ErrNotInNamespace
	}
	if err := Check(); err != nil {
		return nil, err
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	if opts.BinDir == "" {
		opts.BinDir = filepath.Join(root, "bin")
	}
	if err := controlplane.EnsureBinaries(ctx, opts.BinDir, opts.logf, nodeBinaries); err != nil {
		return nil, err
	}
	if opts.Version == "" {
		out, _ := exec.CommandContext(ctx, "git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
		opts.Version = strings.TrimSpace(string(out))
	}
	began := time.Now()
	built, err := buildImages(ctx, root, filepath.Join(opts.BinDir, "images"), opts.Version)
	if err != nil {
		return nil, err
	}
	opts.logf("images built in %s", time.Since(began).Round(time.Millisecond))

	dir := os.Getenv(envDir)
	if err := checkDisk(cmp.Or(dir, os.TempDir())); err != nil {
		return nil, err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ktn-"); err != nil {
			return nil, err
		}
	}
	c := &Cluster{Dir: dir, Images: built, cgroup: cgroupName(dir), socket: filepath.Join(dir, "containerd.sock")}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, c.Stop())
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	began = time.Now()
	if err := c.start(ctx, opts); err != nil {
		return nil, err
	}
	opts.logf("single-node cluster ready in %s (node %s at %s, dir %s)", time.Since(began).Round(time.Millisecond), NodeName, NodeIP, dir)
	return c, nil
}

func cgroupName(dir string) string { return "kubetunnel-" + filepath.Base(dir) }

func (c *Cluster) start(ctx context.Context, opts Options) error {
	dir := c.Dir
	if err := writeFiles(map[string]string{
		filepath.Join(dir, "containerd.toml"):           containerdConfig(dir),
		filepath.Join(dir, "cni", "10-bridge.conflist"): cniConfig(dir),
		filepath.Join(dir, "kubelet.yaml"):              kubeletConfig(dir, c.cgroup),
	}); err != nil {
		return err
	}
	if err := createCgroups(c.cgroup); err != nil {
		return err
	}
	var err error
	if c.containerd, err = childproc.Start("containerd", filepath.Join(dir, "containerd.log"), "containerd", "--config", filepath.Join(dir, "containerd.toml")); err != nil {
		return err
	}
	if err := c.waitContainerd(ctx); err != nil {
		return err
	}
	for ref, archive := range c.Images.Archives {
		if out, err := c.ctr(ctx, "images", "import", archive); err != nil {
			return fmt.Errorf("import %s: %w\n%s", ref, err, out)
		}
	}
	opts.logf("containerd up, images imported")

	nodeUser := controlplane.User{Name: "system:node:" + NodeName, Token: randomToken(), Groups: []string{"system:nodes"}}
	kcmUser := controlplane.User{Name: "system:kube-controller-manager", Token: randomToken()}
	schedUser := controlplane.User{Name: "system:kube-scheduler", Token: randomToken()}
	c.CP, err = controlplane.Start(ctx, controlplane.Options{
		BinDir:  opts.BinDir,
		Dir:     filepath.Join(dir, "controlplane"),
		Logf:    opts.Logf,
		Users:   append([]controlplane.User{nodeUser, kcmUser, schedUser}, opts.Users...),
		Address: NodeIP,
		APIServerArgs: []string{
			"--authorization-mode=Node,RBAC",
			// Otherwise it resolves the node's hostname through DNS and
			// times out.
			"--kubelet-preferred-address-types=InternalIP",
			"--service-cluster-ip-range=" + ServiceCIDR,
		},
	})
	if err != nil {
		return err
	}
	certs := filepath.Join(c.CP.Dir, "certs", "apiserver.crt")
	kcmConfig, err := c.CP.KubeconfigFor(kcmUser)
	if err != nil {
		return err
	}
	// Each controller gets its own service account: with the manager's
	// own credentials its controllers hit RBAC errors and the node keeps
	// its not-ready taint.
	if c.kcm, err = childproc.Start("kube-controller-manager", filepath.Join(dir, "kube-controller-manager.log"),
		filepath.Join(opts.BinDir, "kube-controller-manager"),
		"--kubeconfig="+kcmConfig,
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+filepath.Join(c.CP.Dir, "sa.key"),
		"--root-ca-file="+certs,
		"--leader-elect=false",
		"--secure-port=0",
		"--kube-api-qps=100", "--kube-api-burst=200",
	); err != nil {
		return err
	}
	schedConfig, err := c.CP.KubeconfigFor(schedUser)
	if err != nil {
		return err
	}
	if c.scheduler, err = childproc.Start("kube-scheduler", filepath.Join(dir, "kube-scheduler.log"),
		filepath.Join(opts.BinDir, "kube-scheduler"),
		"--kubeconfig="+schedConfig, "--leader-elect=false", "--secure-port=0",
	); err != nil {
		return err
	}
	nodeConfig, err := c.CP.KubeconfigFor(nodeUser)
	if err != nil {
		return err
	}
	if c.kubelet, err = childproc.Start("kubelet", filepath.Join(dir, "kubelet.log"),
		filepath.Join(opts.BinDir, "kubelet"),
		"--config="+filepath.Join(dir, "kubelet.yaml"),
		"--kubeconfig="+nodeConfig,
		"--root-dir="+filepath.Join(dir, "kubelet"),
		"--cert-dir="+filepath.Join(dir, "kubelet-pki"),
		"--node-ip="+NodeIP,
		"--hostname-override="+NodeName,
	); err != nil {
		return err
	}
	return c.waitReady(ctx)
}

// ContainerdSocket is the node's containerd address, for `ctr --address`
// (images and containers are in its k8s.io namespace).
func (c *Cluster) ContainerdSocket() string { return c.socket }

// ctr runs containerd's client against this node's containerd, in the
// namespace the CRI uses.
func (c *Cluster) ctr(ctx context.Context, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, "ctr", append([]string{"--address", c.socket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
}

func (c *Cluster) waitContainerd(ctx context.Context) error {
	for {
		if exited, err := c.containerd.Exited(); exited {
			return fmt.Errorf("containerd exited: %w\n%s", err, c.containerd.LogTail(30))
		}
		if conn, err := net.Dial("unix", c.socket); err == nil {
			conn.Close()
			if _, err := c.ctr(ctx, "version"); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd not ready: %w\n%s", ctx.Err(), c.containerd.LogTail(30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitReady waits until the node is Ready without the not-ready taint (the
// kubelet, CNI and controller-manager all work) and the default namespace
// has its ServiceAccount (the controller-manager's token controllers work).
func (c *Cluster) waitReady(ctx context.Context) error {
	var last string
	for {
		for _, p := range []*childproc.Process{c.containerd, c.kcm, c.scheduler, c.kubelet} {
			if exited, err := p.Exited(); exited {
				return fmt.Errorf("%s exited: %w\n%s", p.Name, err, p.LogTail(40))
			}
		}
		last = c.readiness(ctx)
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node not ready: %s: %w\n%s%s", last, ctx.Err(), c.kubelet.LogTail(30), c.kcm.LogTail(15))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readiness returns what the cluster still lacks, or "" when it is ready.
func (c *Cluster) readiness(ctx context.Context) string {
	core := c.CP.Clientset().CoreV1()
	node, err := core.Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("node %s: %v", NodeName, err)
	}
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			ready = cond.Status == corev1.ConditionTrue
			if !ready {
				return fmt.Sprintf("node %s not ready: %s", NodeName, cond.Message)
			}
		}
	}
	if !ready {
		return "node has no Ready condition yet"
	}
	for _, t := range node.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady {
			return "node still has the not-ready taint"
		}
	}
	if _, err := core.ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return fmt.Sprintf("default service account: %v", err)
	}
	return ""
}

// Stop ends every daemon and container and removes everything the node
// made (see cleanup), and fails if something is left.
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	var errs []error
	// The kubelet first, so that it restarts nothing while the rest stops.
	errs = append(errs, c.kubelet.Stop(syscall.SIGTERM, 5*time.Second))
	errs = append(errs, c.kcm.Stop(syscall.SIGKILL, 0), c.scheduler.Stop(syscall.SIGKILL, 0))
	errs = append(errs, killCgroupProcs(c.cgroup))
	errs = append(errs, c.containerd.Stop(syscall.SIGTERM, 5*time.Second))
	if c.CP != nil {
		errs = append(errs, c.CP.Stop())
	}
	errs = append(errs, cleanup(c.Dir, c.cgroup, c.socket))
	if left := leftovers(c.Dir, c.cgroup, c.socket); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left behind after stop: %s", strings.Join(left, "; ")))
	}
	return errors.Join(errs...)
}

// ContainerPIDs returns the processes of a running container, by the
// container ID of its pod's status (containerd://ID), from the node's
// cgroups: a test can kill them as a crash would.
func (c *Cluster) ContainerPIDs(containerID string) ([]int, error) {
	_, id, ok := strings.Cut(containerID, "://")
	if !ok || id == "" {
		return nil, fmt.Errorf("container ID %q: want runtime://id", containerID)
	}
	var pids []int
	for _, d := range cgroupDirs(c.cgroup) {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() || e.Name() != id {
				return nil
			}
			data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
			return filepath.SkipDir
		})
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no processes of container %s in cgroup %s", id, c.cgroup)
	}
	return pids, nil
}
