package kubelet

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// ContainerName is the name of the one container of pods made by CreatePod.
const ContainerName = "main"

// CreatePod creates a pod with one container named "main", bound to the
// registered node, and reports it Running and ready through the status
// subresource, as a kubelet would. kubectl refuses exec, attach and
// port-forward to pods that are not running.
func (k *Kubelet) CreatePod(ctx context.Context, client kubernetes.Interface, namespace, podName string) error {
	nodeName, err := k.node("create pod")
	if err != nil {
		return err
	}
	pod, err := client.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Labels: map[string]string{"app": podName}},
		Spec: corev1.PodSpec{
			// Bound directly: there is no scheduler.
			NodeName: nodeName,
			Containers: []corev1.Container{{
				Name:  ContainerName,
				Image: "kubetunnel.invalid/stand-in:latest",
				// kubectl attach -i wants a container that keeps stdin open.
				Stdin: true,
			}},
			// No token volume: nothing would mount it.
			AutomountServiceAccountToken: ptr.To(false),
			// Deletion without a kubelet to confirm it must not hang.
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod %s/%s: %w", namespace, podName, err)
	}
	return reportRunning(ctx, client, pod)
}

// Adopt plays the scheduler and the container runtime for a pod someone
// else created: it binds the pod to the registered node and reports it
// Running and ready. The pod's command does not run; exec, attach, logs
// and port-forward behave as for every pod of this kubelet.
func (k *Kubelet) Adopt(ctx context.Context, client kubernetes.Interface, namespace, podName string) error {
	nodeName, err := k.node("adopt pod")
	if err != nil {
		return err
	}
	pods := client.CoreV1().Pods(namespace)
	if err := pods.Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: podName},
		Target:     corev1.ObjectReference{Kind: "Node", Name: nodeName},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("bind pod %s/%s to %s: %w", namespace, podName, nodeName, err)
	}
	pod, err := pods.Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get pod %s/%s: %w", namespace, podName, err)
	}
	return reportRunning(ctx, client, pod)
}

func (k *Kubelet) node(what string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.nodeName == "" {
		return "", fmt.Errorf("%s: no node registered; call RegisterNode first", what)
	}
	return k.nodeName, nil
}

// reportRunning sets a bound pod's status to Running with every container
// started and ready.
func reportRunning(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) error {
	now := metav1.NewTime(time.Now())
	conditions := make([]corev1.PodCondition, 0, 4)
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		conditions = append(conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	statuses := make([]corev1.ContainerStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		statuses = append(statuses, corev1.ContainerStatus{
			Name:        c.Name,
			Ready:       true,
			Started:     ptr.To(true),
			Image:       c.Image,
			ImageID:     c.Image,
			ContainerID: fmt.Sprintf("standin://%s-%s-%s", pod.Namespace, pod.Name, c.Name),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	pod.Status = corev1.PodStatus{
		Phase:             corev1.PodRunning,
		Conditions:        conditions,
		HostIP:            "127.0.0.1",
		StartTime:         &now,
		ContainerStatuses: statuses,
	}
	if _, err := client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}
