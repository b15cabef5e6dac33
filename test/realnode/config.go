package realnode

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"kubetunnel/test/realnode/images"
)

// evictionFree is the free space (node and image filesystem) below which
// the node's kubelet evicts pods; minFreeDisk, more than that, is what
// Start asks for before it starts a node, so that a nearly full disk is
// an error that says so instead of evicted pods halfway through a test.
const (
	evictionFree        = "256Mi"
	minFreeDisk  uint64 = 1 << 30
)

// containerdConfig is containerd 1.6's config (version 2). Everything it
// writes stays under dir: its root and state, runc's state, the pods'
// network namespaces (netns_mounts_under_state_dir), so cleanup finds it.
// restrict_oom_score_adj: without CAP_SYS_RESOURCE runc fails with "can't
// get final child's PID from pipe" when the kubelet asks for a negative
// oom_score_adj. The sandbox image is the locally imported pause image.
func containerdConfig(dir string) string {
	return strings.NewReplacer("{dir}", dir, "{cni}", CNIDir, "{pause}", "docker.io/"+images.PauseRef).Replace(`version = 2
root = "{dir}/containerd/root"
state = "{dir}/containerd/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{dir}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}"
    conf_dir = "{dir}/cni"
`)
}

// cniConfig is a bridge network for pods with host-local addresses from
// PodCIDR and the bridge as their gateway. No masquerading (no iptables):
// pods only talk to addresses inside the node's namespace.
func cniConfig(dir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "kubetunnel",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
`, filepath.Join(dir, "cni-ipam"), PodCIDR)
}

// kubeletConfig is the node's KubeletConfiguration. failCgroupV1: the
// v1beta1 default refuses cgroup v1, which these machines have. The
// kubelet serves the API server's exec, attach, logs and port-forward
// requests without authenticating them: it listens only inside the node's
// namespace. Eviction and image GC thresholds are set low so that a small
// or busy disk does not evict the test pods. The disk thresholds are
// absolute, not percentages: the kubelet takes a percentage of the
// filesystem's size, which on a large thin-provisioned disk (252 GB here)
// makes even 1 % (2.5 GB) more than is free, and the node then evicts
// agentk and taints itself (disk-pressure) in the middle of a test.
func kubeletConfig(dir, cgroupName string) string {
	return strings.NewReplacer("{dir}", dir, "{cgroup}", cgroupName, "{ip}", NodeIP, "{minfree}", evictionFree).Replace(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
failSwapOn: false
address: {ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://{dir}/containerd.sock
podLogsDir: {dir}/pod-logs
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "{minfree}"
  nodefs.inodesFree: "1%"
  imagefs.available: "{minfree}"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusReportFrequency: 10s
`)
}

func writeFiles(files map[string]string) error {
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}
