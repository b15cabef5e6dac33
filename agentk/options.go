package agentk

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"kubetunnel/tunnel"
)

// Defaults, in one place.
const (
	// DefaultObservabilityListen is upstream's: probes and Prometheus
	// reach agentk on the pod's IP (see docs/compatibility.md).
	DefaultObservabilityListen        = ":8080"
	DefaultObservabilityListenNetwork = "tcp"
	DefaultReconnectInitial           = 100 * time.Millisecond
	DefaultReconnectMax               = tunnel.DefaultBackoffMax
	// DefaultDrainTimeout keeps agentk's stop within Kubernetes' default
	// terminationGracePeriodSeconds (30).
	DefaultDrainTimeout = 20 * time.Second
)

// Options are agentk's flags (upstream's and ours, see cmd/agentk).
type Options struct {
	KasAddress               string
	TokenFile                string
	Token                    string // from AGENTK_TOKEN when no file is given
	KasCACertFile            string
	KasTLSServerName         string
	KasHeaders               []string // "Name: value"
	KasInsecureSkipTLSVerify bool
	Kubeconfig               string
	// ObservabilityListenNetwork is tcp (the default), tcp4, tcp6 or unix.
	ObservabilityListenNetwork string
	ObservabilityListen        string
	// ObservabilityCertFile and ObservabilityKeyFile serve the
	// observability listener over TLS when both are set.
	ObservabilityCertFile string
	ObservabilityKeyFile  string

	// PodNamespace and PodName say where this agentk runs
	// (POD_NAMESPACE, POD_NAME); kas shows them with the connection.
	PodNamespace, PodName string

	// REST, when set, is used instead of --kubeconfig (the kubectl
	// connection flags, embedders, tests).
	REST *rest.Config
	// Syncer makes what applies GitOps manifests; nil means gitops-engine
	// against the cluster of REST/--kubeconfig.
	Syncer SyncerFactory
	// ReconcilePeriod is how often each manifest project is re-synced
	// without a new commit, putting back what was changed by hand.
	ReconcilePeriod time.Duration
	// DrainTimeout bounds how long a stopping agentk lets proxied requests
	// in flight finish (DefaultDrainTimeout).
	DrainTimeout time.Duration

	// ProxyProtocol is the highest tunnel protocol agentk offers kas for
	// proxied requests (0: AGENTK_PROXY_PROTOCOL, else the newest, 2); 1
	// makes it behave as an agentk from before protocol 2.
	ProxyProtocol int

	// Timers tests shorten; zero means the default.
	ReconnectInitial time.Duration
	ReconnectMax     time.Duration
	Session          tunnel.SessionConfig
}

// Validate checks the options and names the flag to fix.
func (o *Options) Validate() error {
	var errs []error
	if o.KasAddress == "" {
		errs = append(errs, errors.New("--kas-address is required (e.g. wss://kas.example.com/)"))
	} else if _, err := tunnel.ParseAddress(o.KasAddress); err != nil {
		errs = append(errs, fmt.Errorf("--kas-address: %w", err))
	}
	if o.TokenFile == "" && o.Token == "" {
		errs = append(errs, errors.New("no agent token: set --token-file or the AGENTK_TOKEN environment variable"))
	}
	for _, h := range o.KasHeaders {
		if name, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(name) == "" {
			errs = append(errs, fmt.Errorf("--kas-header %q: want \"Name: value\"", h))
		}
	}
	if (o.ObservabilityCertFile == "") != (o.ObservabilityKeyFile == "") {
		errs = append(errs, errors.New("--observability-cert-file and --observability-key-file must be set together"))
	}
	if o.ObservabilityListen == "" {
		o.ObservabilityListen = DefaultObservabilityListen
	}
	switch o.ObservabilityListenNetwork {
	case "":
		o.ObservabilityListenNetwork = DefaultObservabilityListenNetwork
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		errs = append(errs, fmt.Errorf("--observability-listen-network %q: want tcp, tcp4, tcp6 or unix", o.ObservabilityListenNetwork))
	}
	if o.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("--drain-timeout %v: must not be negative", o.DrainTimeout))
	}
	if o.ProxyProtocol < 0 || o.ProxyProtocol > tunnel.MaxProtocol {
		errs = append(errs, fmt.Errorf("ProxyProtocol %d: want 1 to %d, or 0 for the newest", o.ProxyProtocol, tunnel.MaxProtocol))
	}
	if v := os.Getenv("AGENTK_PROXY_PROTOCOL"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > tunnel.MaxProtocol {
			errs = append(errs, fmt.Errorf("AGENTK_PROXY_PROTOCOL %q: want 1 to %d", v, tunnel.MaxProtocol))
		}
	}
	return errors.Join(errs...)
}

func (o *Options) drainTimeout() time.Duration {
	if o.DrainTimeout > 0 {
		return o.DrainTimeout
	}
	return DefaultDrainTimeout
}

// token reads the agent token. The file is read on every dial, so a
// rotated Secret takes effect without a restart.
func (o *Options) token() (string, error) {
	if o.TokenFile == "" {
		return strings.TrimSpace(o.Token), nil
	}
	b, err := os.ReadFile(o.TokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("--token-file %s is empty", o.TokenFile)
	}
	return t, nil
}

func (o *Options) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         o.KasTLSServerName,
		InsecureSkipVerify: o.KasInsecureSkipTLSVerify, //nolint:gosec // an explicit flag
	}
	if o.KasCACertFile != "" {
		pem, err := os.ReadFile(o.KasCACertFile)
		if err != nil {
			return nil, fmt.Errorf("--kas-ca-cert-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--kas-ca-cert-file %s: no PEM certificate in it", o.KasCACertFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func (o *Options) header() http.Header {
	h := http.Header{}
	for _, kv := range o.KasHeaders {
		name, value, _ := strings.Cut(kv, ":")
		h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	return h
}

// proxyProtocol is ProxyProtocol, or AGENTK_PROXY_PROTOCOL (a rollback
// switch to protocol 1, and how the end-to-end tests run agentk
// processes on either protocol), or 0 for the newest.
func (o *Options) proxyProtocol() int {
	if o.ProxyProtocol > 0 {
		return o.ProxyProtocol
	}
	n, _ := strconv.Atoi(os.Getenv("AGENTK_PROXY_PROTOCOL"))
	return n
}
