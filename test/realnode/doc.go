// Package realnode runs a single-node Kubernetes cluster for tests and the
// demo: etcd and kube-apiserver (package controlplane), kube-controller-
// manager, kube-scheduler and a real kubelet, all built from this module's
// graph, with Debian's containerd, runc and CNI plugins and images made
// locally by package images (no registry, no Docker).
//
// The kubelet registers a node address that is not loopback, so the whole
// cluster lives in a network namespace the harness creates: a veth pair
// with both ends inside it, 10.250.0.1/24 on one end and the default route
// through it. Nothing leaves the namespace. The test process itself runs
// inside it too: Main re-executes the test binary under
// `nsenter --net=/run/netns/NAME` (not `ip netns exec`, which remounts /sys
// and hides the cgroup hierarchies the kubelet needs), so tests, kas,
// kubectl and pods all reach each other at 10.250.0.1.
//
// It needs root, cgroups (v1 as on the machines it was built on; v2 is
// handled but untested), and the packages containerd,
// runc, containernetworking-plugins, busybox-static and iproute2; a missing
// piece is an error that names the package to install.
package realnode
