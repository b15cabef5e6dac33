package kubelet

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RegisterNode creates (or takes over) the Node nodeName and points its
// status at this server, which is all kube-apiserver needs to route exec,
// attach, port-forward and logs of the node's pods here. Pods made by
// CreatePod are bound to the most recently registered node.
func (k *Kubelet) RegisterNode(ctx context.Context, client kubernetes.Interface, nodeName string) error {
	nodes := client.CoreV1().Nodes()
	node, err := nodes.Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   nodeName,
			Labels: map[string]string{"kubernetes.io/hostname": nodeName, "kubernetes.io/os": "linux"},
		},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		node, err = nodes.Get(ctx, nodeName, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", nodeName, err)
	}
	now := metav1.NewTime(time.Now())
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node.Status = corev1.NodeStatus{
		// Only InternalIP: kube-apiserver's default preferred address types
		// start with Hostname, and a Hostname of nodeName would not resolve.
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(k.Port)}},
		Capacity:        capacity,
		Allocatable:     capacity,
		Conditions: []corev1.NodeCondition{{
			Type:               corev1.NodeReady,
			Status:             corev1.ConditionTrue,
			Reason:             "KubeletReady",
			Message:            "stand-in kubelet is serving",
			LastHeartbeatTime:  now,
			LastTransitionTime: now,
		}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          "v0.0.0-standin",
			ContainerRuntimeVersion: "standin://0.0.0",
			OperatingSystem:         "linux",
			Architecture:            "amd64",
		},
	}
	if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set status of node %s: %w", nodeName, err)
	}
	k.mu.Lock()
	k.nodeName = nodeName
	k.mu.Unlock()
	return nil
}
