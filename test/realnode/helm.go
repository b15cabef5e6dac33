package realnode

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/connrotation"

	"kubetunnel/internal/testutil/controlplane"
)

// Release is a chart installed with the Helm SDK, as `helm install` would.
type Release struct {
	*release.Release
	cfg    *action.Configuration
	dialer *connrotation.Dialer
}

// InstallChart installs the chart in chartDir (relative to the repository
// root) as release name into namespace (created if missing), with values,
// and waits until its resources are ready. Close the Release when done.
func (c *Cluster) InstallChart(ctx context.Context, chartDir, name, namespace string, values map[string]any, timeout time.Duration) (*Release, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	chrt, err := loader.Load(filepath.Join(root, chartDir))
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	r := &Release{cfg: new(action.Configuration), dialer: connrotation.NewDialer((&net.Dialer{}).DialContext)}
	kubeconfig, cacheDir := c.CP.KubeconfigPath, filepath.Join(c.Dir, "helm-cache")
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace, flags.CacheDir = &kubeconfig, &namespace, &cacheDir
	// Every connection goes through a dialer that Close can close, so
	// that no idle keep-alive connection outlives the test.
	flags.WrapConfigFn = func(cfg *rest.Config) *rest.Config {
		cfg.Dial = r.dialer.DialContext
		return cfg
	}
	logf := func(string, ...any) {}
	if os.Getenv("REALNODE_HELM_DEBUG") != "" {
		logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "helm: "+format+"\n", args...) }
	}
	if err := r.cfg.Init(flags, namespace, "secret", logf); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	install := action.NewInstall(r.cfg)
	install.ReleaseName, install.Namespace, install.CreateNamespace = name, namespace, true
	install.Wait, install.Timeout = true, timeout
	rel, err := install.RunWithContext(ctx, chrt, values)
	if err != nil {
		r.dialer.CloseAll()
		return nil, fmt.Errorf("helm install %s %s: %w", name, chartDir, err)
	}
	r.Release = rel
	return r, nil
}

// Close closes the Helm client's connections.
func (r *Release) Close() {
	r.dialer.CloseAll()
}
