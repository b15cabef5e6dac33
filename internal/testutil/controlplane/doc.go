// Package controlplane runs a real Kubernetes control plane (etcd and
// kube-apiserver, built from this module's own dependency graph) for tests
// and demos, or wraps an existing cluster named by KUBECONFIG.
//
// There is no controller-manager, scheduler or kubelet: tests create what
// those would (the default ServiceAccount, Node objects, Pod status) and
// package kubelet stands in for the node side of exec, attach, logs and
// port-forward.
package controlplane
