package kubelet

import (
	"context"
	"errors"
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
	k.mu.Lock()
	nodeName := k.nodeName
	k.mu.Unlock()
	if nodeName == "" {
		return errors.New("create pod: no node registered; call RegisterNode first")
	}
	pods := client.CoreV1().Pods(namespace)
	pod, err := pods.Create(ctx, &corev1.Pod{
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
	now := metav1.NewTime(time.Now())
	conditions := make([]corev1.PodCondition, 0, 4)
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		conditions = append(conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		Conditions: conditions,
		HostIP:     "127.0.0.1",
		StartTime:  &now,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:         ContainerName,
			Ready:        true,
			Started:      ptr.To(true),
			Image:        pod.Spec.Containers[0].Image,
			ImageID:      pod.Spec.Containers[0].Image,
			ContainerID:  fmt.Sprintf("standin://%s-%s", namespace, podName),
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			RestartCount: 0,
		}},
	}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set status of pod %s/%s: %w", namespace, podName, err)
	}
	return nil
}
