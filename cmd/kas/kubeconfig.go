package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"kubetunnel/kas"
)

// kubeconfigCmd prints a kubeconfig for a caller of the Kubernetes API proxy.
func kubeconfigCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kas kubeconfig", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "path of the kas config file (required)")
	fs.StringVar(configFile, "configuration-file", "", "the same as --config (GitLab's kas calls it so)")
	var o kas.KubeconfigOptions
	fs.StringVar(&o.Agent, "agent", "", "agent whose cluster the kubeconfig reaches (required)")
	fs.StringVar(&o.User, "user", "", "users[].name of the caller (required)")
	tokenFile := fs.String("token-file", "", "file holding the caller's token; without it the kubeconfig holds a placeholder to replace")
	fs.StringVar(&o.Server, "server", "", "kas URL as callers reach it, e.g. https://kas.example.com:8154 (default: from agent.kubernetes_api.listen)")
	fs.StringVar(&o.CAFile, "ca-file", "", "CA certificate callers should trust (default: the listener's certificate_file when TLS is on)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: kas kubeconfig --config FILE --agent NAME --user NAME [--token-file F] > kubeconfig\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *configFile == "" || o.Agent == "" || o.User == "" {
		fmt.Fprintln(stderr, "kas kubeconfig: --config, --agent and --user are required")
		fs.Usage()
		return 2
	}
	cfg, err := kas.LoadConfig(*configFile)
	if err != nil {
		fmt.Fprintf(stderr, "kas kubeconfig: %v\n", err)
		return 1
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "kas kubeconfig: --token-file: %v\n", err)
			return 1
		}
		o.Token = strings.TrimSpace(string(b))
	}
	out, err := kas.Kubeconfig(cfg, o)
	if err != nil {
		fmt.Fprintf(stderr, "kas kubeconfig: %v\n", err)
		return 1
	}
	stdout.Write(out)
	return 0
}
