package controlplane

import (
	"errors"
	"fmt"
	"net"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/connrotation"
)

// ControlPlane is a running kube-apiserver, either started by Start or an
// existing cluster wrapped by FromKubeconfig.
type ControlPlane struct {
	// URL is the API server's address, e.g. https://127.0.0.1:40123.
	URL string
	// AdminToken authenticates as a member of system:masters. Empty for an
	// existing cluster whose kubeconfig uses another kind of credential.
	AdminToken string
	// CAData verifies the API server's serving certificate (PEM).
	CAData []byte
	// KubeconfigPath is an admin kubeconfig usable by the real kubectl.
	KubeconfigPath string
	// Dir holds data, certificates, logs and kubeconfigs of a started
	// control plane. Empty for an existing cluster.
	Dir string

	restConfig *rest.Config
	clientset  kubernetes.Interface
	// dialer tracks every connection made through RESTConfig so Stop can
	// close them; otherwise idle keep-alive connections to a cluster that
	// outlives the test would show up as leaked goroutines.
	dialer *connrotation.Dialer

	etcd, apiserver *process
	removeDir       bool
}

// RESTConfig returns a fresh admin client configuration; callers may modify it.
func (c *ControlPlane) RESTConfig() *rest.Config {
	return rest.CopyConfig(c.restConfig)
}

// Clientset returns an admin clientset.
func (c *ControlPlane) Clientset() kubernetes.Interface {
	return c.clientset
}

// Stop kills the processes, waits for them, closes client connections and
// removes the directory if Start created it. It is a no-op on a nil
// ControlPlane so that deferred cleanup after a failed Start is safe.
func (c *ControlPlane) Stop() error {
	if c == nil {
		return nil
	}
	errs := []error{c.stopProcesses()}
	if c.dialer != nil {
		c.dialer.CloseAll()
	}
	if c.removeDir && c.Dir != "" {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
		}
	}
	return errors.Join(errs...)
}

// initClients builds the admin REST config and clientset from base, routing
// connections through a tracking dialer.
func (c *ControlPlane) initClients(base *rest.Config) error {
	c.dialer = connrotation.NewDialer((&net.Dialer{}).DialContext)
	cfg := rest.CopyConfig(base)
	cfg.Dial = c.dialer.DialContext
	// Tests create objects in bursts; client-side throttling only slows them.
	cfg.QPS = 100
	cfg.Burst = 200
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create clientset: %w", err)
	}
	c.restConfig = cfg
	c.clientset = cs
	return nil
}

func (c *ControlPlane) stopProcesses() error {
	var errs []error
	// apiserver first: the other way round it logs a burst of etcd
	// connection errors.
	for _, p := range []*process{c.apiserver, c.etcd} {
		if p != nil {
			errs = append(errs, p.stop())
		}
	}
	return errors.Join(errs...)
}

// PIDs returns the process ids of etcd and kube-apiserver (none for an
// existing cluster), so tests can check that Stop ended them and
// benchmarks can place them on CPUs of their own.
func (c *ControlPlane) PIDs() []int {
	var pids []int
	for _, p := range []*process{c.etcd, c.apiserver} {
		if p != nil {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return pids
}
