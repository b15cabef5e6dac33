// Command agentk is the in-cluster agent: it dials out to kas and keeps the
// tunnel open.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"kubetunnel/agentk"
	"kubetunnel/version"
)

const usage = `agentk: the Kubernetes agent. It runs in a cluster, dials out to kas and
keeps that connection open; through it kas delivers configuration and
forwards Kubernetes API requests into the cluster.

Usage:
  agentk --kas-address wss://kas.example.com/ --token-file /etc/agentk/token

Flags:
`

// headerList collects repeated --kas-header flags.
type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var opts agentk.Options
	var headers headerList
	fs := flag.NewFlagSet("agentk", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.KasAddress, "kas-address", "", "kas address: wss://host[:port]/path, ws://…, grpcs://host:port or grpc://host:port")
	fs.StringVar(&opts.TokenFile, "token-file", "", "file holding the agent token (or set AGENTK_TOKEN)")
	fs.StringVar(&opts.KasCACertFile, "kas-ca-cert-file", "", "PEM CA certificate to verify kas with, in addition to the system roots")
	fs.StringVar(&opts.KasTLSServerName, "kas-tls-server-name", "", "server name to verify kas's certificate against (default: the host of --kas-address)")
	fs.Var(&headers, "kas-header", "extra header for the connection to kas, \"Name: value\" (repeatable)")
	fs.BoolVar(&opts.KasInsecureSkipTLSVerify, "kas-insecure-skip-tls-verify", false, "do not verify kas's certificate (insecure: for tests only)")
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig for the cluster's API server (default: the in-cluster service account)")
	fs.StringVar(&opts.ObservabilityListen, "observability-listen", agentk.DefaultObservabilityListen, "address serving /metrics, /healthz and /readyz")
	fs.StringVar(&opts.ObservabilityCertFile, "observability-tls-cert-file", "", "serve the observability listener over TLS with this certificate (PEM)")
	fs.StringVar(&opts.ObservabilityKeyFile, "observability-tls-key-file", "", "key of --observability-tls-cert-file (PEM)")
	fs.DurationVar(&opts.DrainTimeout, "drain-timeout", agentk.DefaultDrainTimeout, "on SIGTERM, how long proxied requests in flight may take to finish (kas sends new ones to other replicas); keep it below the pod's terminationGracePeriodSeconds")
	fs.DurationVar(&opts.ReconcilePeriod, "gitops-reconcile-period", agentk.DefaultReconcilePeriod, "how often each manifest project is re-synced without a new commit, putting back objects changed by hand")
	logLevel := fs.String("log-level", "info", "initial log level (config.yaml's observability.logging.level overrides it)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nEnvironment:\n  AGENTK_TOKEN   the agent token, when --token-file is not given\n  HTTPS_PROXY, NO_PROXY   proxy for the connection to kas\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
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
	opts.KasHeaders = headers
	opts.Token = os.Getenv("AGENTK_TOKEN")
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "agentk: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	agent, err := agentk.New(&opts, logger, level)
	if err != nil {
		fmt.Fprintf(stderr, "agentk: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal agentk drains (--drain-timeout); a second one
	// stops it at once (Go's default action).
	context.AfterFunc(ctx, func() {
		stop()
		logger.Info("Stop signal received: draining proxied requests (a second signal stops agentk at once)", "drain_timeout", opts.DrainTimeout)
	})
	if err := agent.Run(ctx); err != nil {
		logger.Error("agentk failed", "err", err)
		return 1
	}
	return 0
}
