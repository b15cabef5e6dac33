package controlplane

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var nonDNSLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// CreateNamespace creates a uniquely named namespace for one test, named
// after prefix (typically t.Name()), and its default ServiceAccount, which
// a controller-manager would normally create and without which the
// ServiceAccount admission plugin rejects every pod.
//
// Namespaces are not deleted: without a controller-manager nothing would
// finalize the deletion, and the control plane is thrown away after the
// package's tests anyway.
func (c *ControlPlane) CreateNamespace(ctx context.Context, prefix string) (string, error) {
	name := nonDNSLabel.ReplaceAllString(strings.ToLower(prefix), "-")
	// Leave room for the random suffix within the 63-character limit.
	name = strings.Trim(name[:min(len(name), 50)], "-")
	if name == "" {
		name = "test"
	}
	ns, err := c.clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create namespace for %q: %w", prefix, err)
	}
	_, err = c.clientset.CoreV1().ServiceAccounts(ns.Name).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
	}, metav1.CreateOptions{})
	// On a real cluster the controller-manager may have been faster.
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create default service account in %s: %w", ns.Name, err)
	}
	return ns.Name, nil
}
