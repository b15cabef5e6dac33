package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"kubetunnel/kas"
	"kubetunnel/kas/check"
)

// checkCmd validates a config and reaches everything it names, printing a
// verdict per item: what an operator runs before (re)starting kas.
func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kas check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "path of the kas config file (required)")
	fs.StringVar(configFile, "configuration-file", "", "the same as --config (GitLab's kas calls it so)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: kas check --config FILE\n\nValidates the config, loads TLS key pairs, fetches every repository and parses every agent's config.yaml. Exit status 0 when all pass.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *configFile == "" {
		fmt.Fprintln(stderr, "kas check: --config is required")
		return 2
	}
	cfg, err := kas.LoadConfig(*configFile)
	if err != nil {
		fmt.Fprintf(stdout, "FAIL  config: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if !check.Run(ctx, cfg, stdout) {
		return 1
	}
	return 0
}
