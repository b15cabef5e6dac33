package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"kubetunnel/internal/testutil/controlplane"
)

// tunnelEnv set to "grpc" makes the proxy benchmarks' kas and agentk use
// the raw TCP transport instead of WebSocket, to tell that layer's cost
// from the rest.
const tunnelEnv = "KUBETUNNEL_BENCH_TUNNEL"

// cpusEnv set to "split" runs the benchmark process (client, kas and
// agentk, GOMAXPROCS 1) on one CPU and the control plane (kube-apiserver
// and etcd) on another, as they would run on machines of their own. By
// default all three Go runtimes share every core, and on 2 cores each
// goroutine hand-off may wait for one (docs/benchmarks.md, "Kubernetes
// API proxy: direct vs through kas").
const cpusEnv = "KUBETUNNEL_BENCH_CPUS"

// agentkAPIToken is agentk's static token towards kube-apiserver. The
// direct client uses it too, so both paths make the API server do the
// same authentication and RBAC work.
const agentkAPIToken = "bench-agentk-apiserver-token-0123456789"

// proxyEnv is a real kube-apiserver, and kas and agentk in this process
// in front of it, shared by every proxy benchmark.
type proxyEnv struct {
	cp       *controlplane.ControlPlane
	kas      *runningKas
	agent    *runningAgent
	cacheDir string

	// direct talks to kube-apiserver as client-go does: TLS and HTTP/2.
	direct    *http.Client
	directURL string
	// viaKas talks to kas's Kubernetes API listener: plain HTTP/1.1, one
	// connection per concurrent request.
	viaKas *http.Client
	kasURL string
}

var (
	envOnce sync.Once
	env     *proxyEnv
	envErr  error
)

// sharedProxyEnv starts the environment on first use; TestMain stops it.
func sharedProxyEnv(b *testing.B) *proxyEnv {
	b.Helper()
	envOnce.Do(func() { env, envErr = startProxyEnv() })
	if envErr != nil {
		b.Fatal(envErr)
	}
	return env
}

func startProxyEnv() (_ *proxyEnv, retErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := &proxyEnv{}
	// The partly started environment must still be stopped on failure.
	env = e
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, stopProxyEnv())
		}
	}()
	var err error
	e.cp, err = controlplane.Start(ctx, controlplane.Options{
		Users: []controlplane.User{{Name: "agentk", Token: agentkAPIToken}},
	})
	if err != nil {
		return nil, err
	}
	if os.Getenv(cpusEnv) == "split" {
		for _, pid := range e.cp.PIDs() {
			if err := pinThreads(pid, 0); err != nil {
				return nil, err
			}
		}
	}
	// agentk is cluster-admin, as upstream's default install.
	if _, err := e.cp.Clientset().RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "agentk-cluster-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: "agentk"}},
	}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("cluster role binding for agentk: %w", err)
	}

	if e.cacheDir, err = os.MkdirTemp("", "bench-kas-cache-"); err != nil {
		return nil, err
	}
	if e.kas, err = startKas(kasConfig(e.cacheDir, os.Getenv(tunnelEnv) != "grpc")); err != nil {
		return nil, err
	}
	// A fresh config, not cp.RESTConfig(): that one dials through the
	// control plane's connection tracker, which agentk in a cluster does
	// not have.
	agentREST := &rest.Config{
		Host:            e.cp.URL,
		BearerToken:     agentkAPIToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: e.cp.CAData},
	}
	if e.agent, err = startAgentk(e.kas.agentURL(), agentREST); err != nil {
		return nil, err
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.cp.CAData) {
		return nil, errors.New("no certificate in the control plane's CA data")
	}
	e.direct = &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 200,
	}}
	e.directURL = e.cp.URL
	// More idle connections than concurrent clients, or Concurrent100
	// would measure connection setup.
	e.viaKas = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	e.kasURL = e.kas.proxyURL()

	// Ready once a request makes it through: agentk is connected and has
	// its configuration.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _, err := e.get(e.viaKas, e.kasURL+"/api/v1/namespaces/default", nil)
		if err == nil && status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no request through kas succeeded within 30s: status %d, %v", status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e, nil
}

// atEnd holds what benchmarks started on top of the shared environment
// (stopAtEnd), stopped before it, last first.
var atEnd []func() error

func stopAtEnd(f func() error) { atEnd = append(atEnd, f) }

// stopProxyEnv stops whatever sharedProxyEnv started, in reverse order.
func stopProxyEnv() error {
	e := env
	if e == nil {
		return nil
	}
	env = nil
	var errs []error
	for i := len(atEnd) - 1; i >= 0; i-- {
		errs = append(errs, atEnd[i]())
	}
	atEnd = nil
	for _, c := range []*http.Client{e.direct, e.viaKas} {
		if c != nil {
			c.CloseIdleConnections()
		}
	}
	if e.agent != nil {
		e.agent.stop()
	}
	if e.kas != nil {
		if err := e.kas.stop(); err != nil {
			errs = append(errs, fmt.Errorf("kas Run: %w", err))
		}
	}
	if e.cacheDir != "" {
		errs = append(errs, os.RemoveAll(e.cacheDir))
	}
	errs = append(errs, e.cp.Stop())
	return errors.Join(errs...)
}

// get sends one GET with the bearer token that path needs and reads the
// whole body, as a client must before it can use the answer.
func (e *proxyEnv) get(c *http.Client, url string, hdr http.Header) (status int, n int64, err error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	token := userToken
	if c == e.direct {
		token = agentkAPIToken
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n, err
}

// target is one way to reach the API server.
type target struct {
	name   string
	client *http.Client
	base   string
}

func (e *proxyEnv) targets() []target {
	return []target{{"direct", e.direct, e.directURL}, {"via-kas", e.viaKas, e.kasURL}}
}

// getOK is get that counts anything but 200 as an error.
func (e *proxyEnv) getOK(t target, path string, hdr http.Header) (int64, error) {
	status, n, err := e.get(t.client, t.base+path, hdr)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		return n, fmt.Errorf("%s GET %s: %w", t.name, path, err)
	}
	return n, nil
}

// mustGet is getOK for a benchmark's own goroutine.
func (e *proxyEnv) mustGet(b *testing.B, t target, path string, hdr http.Header) int64 {
	n, err := e.getOK(t, path, hdr)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
