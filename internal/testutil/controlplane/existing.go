package controlplane

import (
	"context"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// FromKubeconfig wraps an existing cluster (such as kind) so the same tests
// run against it. The kubeconfig's current context must have admin rights.
// Stop only closes client connections; the cluster keeps running.
func FromKubeconfig(path string) (*ControlPlane, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	if err := rest.LoadTLSFiles(cfg); err != nil {
		return nil, fmt.Errorf("load TLS files of kubeconfig %s: %w", path, err)
	}
	cp := &ControlPlane{
		URL:            cfg.Host,
		AdminToken:     cfg.BearerToken,
		CAData:         cfg.CAData,
		KubeconfigPath: path,
	}
	if err := cp.initClients(cfg); err != nil {
		return nil, err
	}
	return cp, nil
}

// StartOrExisting uses the cluster named by the KUBECONFIG environment
// variable when it is set (CI with kind) unless opts.LocalOnly, and
// otherwise starts a control plane with Start.
func StartOrExisting(ctx context.Context, opts Options) (*ControlPlane, error) {
	path, err := ExistingKubeconfig(os.Getenv)
	if err != nil {
		return nil, err
	}
	if path != "" && !opts.LocalOnly {
		opts.logf("using existing cluster from KUBECONFIG=%s", path)
		return FromKubeconfig(path)
	}
	return Start(ctx, opts)
}

// ExistingKubeconfig returns the kubeconfig file that KUBECONFIG (read
// with getenv) names, or "" when it is unset: tests then start a local
// control plane instead of using an existing cluster.
func ExistingKubeconfig(getenv func(string) string) (string, error) {
	path := getenv("KUBECONFIG")
	if strings.ContainsRune(path, os.PathListSeparator) {
		return "", fmt.Errorf("KUBECONFIG=%s: a list of files is not supported, name one file", path)
	}
	return path, nil
}
