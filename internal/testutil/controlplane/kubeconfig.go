package controlplane

import (
	"errors"
	"fmt"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ErrExistingCluster is returned by operations that need control over the
// API server's configuration, which an existing cluster does not give.
var ErrExistingCluster = errors.New("not supported on an existing cluster")

// KubeconfigFor writes a kubeconfig that authenticates as a static-token
// user and returns its path. The user must be the admin or one of
// Options.Users, since only those are in the apiserver's token file.
func (c *ControlPlane) KubeconfigFor(user User) (string, error) {
	if c.Dir == "" {
		return "", fmt.Errorf("kubeconfig for static user %q: %w", user.Name, ErrExistingCluster)
	}
	path := filepath.Join(c.Dir, "kubeconfig-"+user.Name)
	if err := writeKubeconfig(path, c.URL, c.CAData, user); err != nil {
		return "", err
	}
	return path, nil
}

func writeKubeconfig(path, server string, caData []byte, user User) error {
	const cluster = "kubetunnel-test"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	cfg.AuthInfos[user.Name] = &clientcmdapi.AuthInfo{Token: user.Token}
	cfg.Contexts[user.Name] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user.Name}
	cfg.CurrentContext = user.Name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
