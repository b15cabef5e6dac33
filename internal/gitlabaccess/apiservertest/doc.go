// Package apiservertest checks package gitlabaccess's identities on the
// real kube-apiserver: what GitLab says about a caller, turned into
// impersonation headers, must be what the API server authenticates and
// what RBAC bindings written for GitLab's agent match. It has tests only.
package apiservertest
