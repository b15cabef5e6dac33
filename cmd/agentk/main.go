// Command agentk is the in-cluster agent: it dials out to kas and keeps the
// tunnel open.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"kubetunnel/agentk"
	"kubetunnel/internal/logging"
	"kubetunnel/internal/stopsignal"
	"kubetunnel/version"
)

const usage = `agentk: the Kubernetes agent. It runs in a cluster, dials out to kas and
keeps that connection open; through it kas delivers configuration and
forwards Kubernetes API requests into the cluster.

Usage:
  agentk --kas-address wss://kas.example.com/ --token-file /etc/agentk/token

It takes the flags and environment of GitLab's agentk, so existing
manifests and Helm values keep working (docs/compatibility.md).

Flags:
`

// Environment variables, as GitLab's agentk reads them.
const (
	envToken        = "AGENTK_TOKEN"
	envPodNamespace = "POD_NAMESPACE"
	envPodName      = "POD_NAME"
)

// inClusterNamespaceFile holds the pod's namespace in every pod that
// mounts a service account token.
const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var opts agentk.Options
	fs := pflag.NewFlagSet("agentk", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.StringVar(&opts.KasAddress, "kas-address", "", "kas address: wss://host[:port]/path, ws://…, grpcs://host:port or grpc://host:port")
	fs.StringVar(&opts.TokenFile, "token-file", "", "file holding the agent token, re-read on every reconnect (or set "+envToken+")")
	var caCert, kasCACert string
	fs.StringVar(&kasCACert, "kas-ca-cert-file", "", "PEM CA certificate to verify kas with, in addition to the system roots")
	fs.StringVar(&caCert, "ca-cert-file", "", "the same as --kas-ca-cert-file (GitLab 16's name)")
	fs.StringVar(&opts.KasTLSServerName, "kas-tls-server-name", "", "server name to verify kas's certificate against (default: the host of --kas-address)")
	fs.StringArrayVar(&opts.KasHeaders, "kas-header", nil, "extra header for the connection to kas, \"Name: value\" (repeatable)")
	fs.BoolVar(&opts.KasInsecureSkipTLSVerify, "kas-insecure-skip-tls-verify", false, "do not verify kas's certificate (insecure: for tests only)")
	fs.StringVar(&opts.ObservabilityListenNetwork, "observability-listen-network", agentk.DefaultObservabilityListenNetwork, "network of the observability listener: tcp, tcp4, tcp6 or unix")
	fs.StringVar(&opts.ObservabilityListen, "observability-listen-address", agentk.DefaultObservabilityListen, "address serving /metrics, /healthz (/liveness) and /readyz (/readiness)")
	fs.StringVar(&opts.ObservabilityListen, "observability-listen", agentk.DefaultObservabilityListen, "the same as --observability-listen-address")
	fs.StringVar(&opts.ObservabilityCertFile, "observability-cert-file", "", "serve the observability listener over TLS with this certificate (PEM)")
	fs.StringVar(&opts.ObservabilityCertFile, "observability-tls-cert-file", "", "the same as --observability-cert-file")
	fs.StringVar(&opts.ObservabilityKeyFile, "observability-key-file", "", "key of --observability-cert-file (PEM)")
	fs.StringVar(&opts.ObservabilityKeyFile, "observability-tls-key-file", "", "the same as --observability-key-file")
	fs.DurationVar(&opts.DrainTimeout, "drain-timeout", agentk.DefaultDrainTimeout, "on SIGTERM, how long proxied requests in flight may take to finish (kas sends new ones to other replicas); keep it below the pod's terminationGracePeriodSeconds")
	fs.DurationVar(&opts.ReconcilePeriod, "gitops-reconcile-period", agentk.DefaultReconcilePeriod, "how often each manifest project is re-synced without a new commit, putting back objects changed by hand")
	logLevel := fs.String("log-level", "info", "initial log level (config.yaml's observability.logging.level overrides it)")
	logFormat := fs.String("log-format", logging.FormatText, "log format: text (key=value) or json (one object per line)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	// The cluster's API server and agentk's credentials: kubectl's flags,
	// as GitLab's agentk registers them; with none, the in-cluster service
	// account.
	kube := genericclioptions.NewConfigFlags(true)
	kube.AddFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nEnvironment:\n"+
			"  "+envToken+"   the agent token, when --token-file is not given (not both)\n"+
			"  "+envPodNamespace+", "+envPodName+"   where agentk runs, shown by kas (default: the service account's namespace, the host name)\n"+
			"  HTTPS_PROXY, NO_PROXY   proxy for the connection to kas\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "agentk: %v (agentk --help lists the flags)\n", err)
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "agentk", version.Version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agentk: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	switch {
	case caCert != "" && kasCACert != "" && caCert != kasCACert:
		fmt.Fprintln(stderr, "agentk: --ca-cert-file and --kas-ca-cert-file name different files: they are the same flag, set one")
		return 2
	case kasCACert != "":
		opts.KasCACertFile = kasCACert
	default:
		opts.KasCACertFile = caCert
	}
	// As GitLab's agentk: the token comes from the file or the
	// environment, never both, and the variable is removed once read.
	if token, ok := os.LookupEnv(envToken); ok {
		if opts.TokenFile != "" {
			fmt.Fprintln(stderr, "agentk: both --token-file and AGENTK_TOKEN are set: use one")
			return 2
		}
		opts.Token = token
		if err := os.Unsetenv(envToken); err != nil {
			fmt.Fprintf(stderr, "agentk: unset %s: %v\n", envToken, err)
			return 1
		}
	}
	opts.PodNamespace, opts.PodName = podIdentity()

	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "agentk: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	logger, flushLog, err := logging.New(stderr, *logFormat, level)
	if err != nil {
		fmt.Fprintf(stderr, "agentk: %v\n", err)
		return 2
	}
	logging.RouteLibraries(logger)
	routeClientLibraries(logger)
	defer flushLog() // the summaries of failures still repeating
	if opts.KasAddress != "" && (opts.TokenFile != "" || opts.Token != "") {
		restCfg, err := kube.ToRESTConfig()
		if err != nil {
			fmt.Fprintf(stderr, "agentk: the cluster's API server: not running in a cluster, and no usable --kubeconfig, KUBECONFIG or --server: %v\n", err)
			return 2
		}
		opts.REST = restCfg
	}
	agent, err := agentk.New(&opts, logger, level)
	if err != nil {
		flushLog() // the log holds lines for a moment (logging.BatchWriter)
		fmt.Fprintf(stderr, "agentk: %v\n", err)
		return 2
	}
	// After the first signal agentk drains (--drain-timeout); a second one
	// stops it at once.
	ctx, stop := stopsignal.Context(context.Background(), func(os.Signal) {
		logger.Info("Stop signal received: draining proxied requests (a second signal stops agentk at once)", "drain_timeout", opts.DrainTimeout)
	})
	defer stop()
	if err := agent.Run(ctx); err != nil {
		logger.Error("agentk failed", "err", err)
		return 1
	}
	return 0
}

// podIdentity is POD_NAMESPACE and POD_NAME, which GitLab's chart sets
// from the downward API. GitLab's agentk refuses to start without them;
// this one falls back to what a pod knows anyway.
func podIdentity() (namespace, name string) {
	namespace, name = os.Getenv(envPodNamespace), os.Getenv(envPodName)
	if namespace == "" {
		if b, err := os.ReadFile(inClusterNamespaceFile); err == nil {
			namespace = strings.TrimSpace(string(b))
		}
	}
	if name == "" {
		name, _ = os.Hostname()
	}
	return namespace, name
}
