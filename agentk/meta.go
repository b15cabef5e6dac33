package agentk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"kubetunnel/tunnel"
	"kubetunnel/version"
)

// clusterVersionTTL is how long agentk trusts the cluster's version it
// sent kas; each connection reads it again after that.
const clusterVersionTTL = 10 * time.Minute

// clusterVersionTimeout bounds the version lookup, which delays a dial;
// after a failed one, dials go without it for clusterVersionRetry.
const (
	clusterVersionTimeout = 2 * time.Second
	clusterVersionRetry   = time.Minute
)

// agentMeta is what agentk tells kas about itself besides its version
// (tunnel.Hello): where it runs, its build, its cluster's version.
type agentMeta struct {
	podNamespace, podName, gitCommit string
	logger                           *slog.Logger
	// clusterVersion asks the API server for its version (gitVersion).
	clusterVersion func(ctx context.Context) (string, error)

	mu      sync.Mutex // guards version and next
	version string
	next    time.Time // when to look the version up again
}

func newAgentMeta(opts *Options, restCfg *rest.Config, logger *slog.Logger) (*agentMeta, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(rest.CopyConfig(restCfg))
	if err != nil {
		return nil, err
	}
	return &agentMeta{
		podNamespace: opts.PodNamespace,
		podName:      opts.PodName,
		gitCommit:    version.BuildCommit(),
		logger:       logger,
		clusterVersion: func(ctx context.Context) (string, error) {
			// The discovery client has no context parameter; the REST
			// client under it does.
			v, err := dc.RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
			if err != nil {
				return "", err
			}
			return parseGitVersion(v)
		},
	}, nil
}

// fill sets h's metadata. The cluster's version is looked up at most every
// clusterVersionTTL; a failed lookup leaves it as it was (possibly empty)
// rather than hold up the connection.
func (m *agentMeta) fill(ctx context.Context, h *tunnel.Hello) {
	h.PodNamespace, h.PodName, h.GitCommit = m.podNamespace, m.podName, m.gitCommit
	m.mu.Lock()
	due := !time.Now().Before(m.next)
	m.mu.Unlock()
	if due {
		ctx, cancel := context.WithTimeout(ctx, clusterVersionTimeout)
		v, err := m.clusterVersion(ctx)
		cancel()
		m.mu.Lock()
		if err == nil {
			m.version, m.next = v, time.Now().Add(clusterVersionTTL)
		} else {
			m.next = time.Now().Add(clusterVersionRetry)
		}
		m.mu.Unlock()
		if err != nil {
			m.logger.Debug("Cannot read the cluster's version for kas; connecting without it", "err", err)
		}
	}
	m.mu.Lock()
	h.KubernetesVersion = m.version
	m.mu.Unlock()
}

// sendsTokenInClear reports whether address carries the agent token
// without TLS to a host that is not this machine.
func sendsTokenInClear(address string) bool {
	u, err := url.Parse(address)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "grpc") {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// parseGitVersion reads gitVersion from the API server's /version answer.
func parseGitVersion(b []byte) (string, error) {
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("the API server's /version: %w", err)
	}
	return v.GitVersion, nil
}
