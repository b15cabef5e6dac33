// Command kas is the agent server: agentk connects to it, and callers reach
// the agents' clusters through it.
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
	"syscall"

	"github.com/redis/go-redis/v9"

	"kubetunnel/internal/logging"
	"kubetunnel/internal/stopsignal"
	"kubetunnel/kas"
	"kubetunnel/version"
)

const usage = `kas: the agent server. agentk connects to it from clusters behind NAT;
kubectl and other callers reach those clusters through it.

Usage:
  kas --config FILE            run the server
  kas token create (--agent NAME | --user NAME) [--output FILE]
                               make a token for agentk (--agent) or for a
                               kubectl user (--user): prints the token once (or
                               writes it to FILE, mode 0600) and the agents[]
                               or users[] entry for the config
  kas kubeconfig --config FILE --agent NAME --user NAME [--token-file F] [--server URL]
                               print a kubeconfig that reaches the agent's
                               cluster through kas as that user
  kas check --config FILE      validate the config and reach every repository,
                               with a verdict per item
  kas agents [describe NAME] [--server URL | --config FILE] [--token-file F] [-o json]
                               the agents a running kas knows: connections,
                               agentk version, config commit, syncs
  kas --version                print the version

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) >= 2 && args[0] == "token" && args[1] == "create" {
		return tokenCreate(args[2:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "kubeconfig" {
		return kubeconfigCmd(args[1:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "agents" {
		return agentsCmd(args[1:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "check" {
		return checkCmd(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("kas", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "path of the kas config file (YAML); see README.md for the keys")
	fs.StringVar(configFile, "configuration-file", "", "the same as --config (GitLab's kas calls it so)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", logging.FormatText, "log format: text (key=value) or json (one object per line)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	reloadPeriod := fs.Duration("config-poll-period", kas.DefaultConfigPollPeriod, "how often kas checks --config for changes and reloads agents, users and repositories (0: only on SIGHUP)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "kas", version.Version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kas: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *configFile == "" {
		fmt.Fprintln(stderr, "kas: --config is required")
		fs.Usage()
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "kas: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	logger, flushLog, err := logging.New(stderr, *logFormat, level)
	if err != nil {
		fmt.Fprintf(stderr, "kas: %v\n", err)
		return 2
	}
	logging.RouteLibraries(logger)
	defer flushLog() // the summaries of failures still repeating
	// go-redis logs through a process-wide logger; kas reports Redis
	// outages itself ("Agent registry (Redis) unreachable"), so the
	// client's own lines are debug detail.
	redis.SetLogger(redisLogger{logger.With("component", "redis")})
	// The log holds lines for a moment (logging.BatchWriter): they go
	// out before an error written straight to stderr.
	fail := func(err error) int {
		flushLog()
		fmt.Fprintf(stderr, "kas: %v\n", err)
		return 1
	}
	cfg, err := kas.LoadConfig(*configFile)
	if err != nil {
		return fail(err)
	}
	srv, err := kas.New(cfg, logger)
	if err != nil {
		return fail(err)
	}
	srv.ConfigFile = *configFile
	srv.ConfigPollPeriod = *reloadPeriod
	if *reloadPeriod <= 0 {
		srv.ConfigPollPeriod = -1
	}
	// SIGHUP reloads the config file (kas.Server.Reload says what applies).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	hupDone := make(chan struct{})
	defer func() {
		signal.Stop(hup)
		close(hupDone)
	}()
	go func() {
		for {
			select {
			case <-hup:
				srv.RequestReload()
			case <-hupDone:
				return
			}
		}
	}()
	// After the first signal kas drains; a second one stops it at once, as
	// an impatient Ctrl-C expects.
	ctx, stop := stopsignal.Context(context.Background(), func(os.Signal) {
		logger.Info("Stop signal received: draining (a second signal stops kas at once)")
	})
	defer stop()
	if err := srv.Run(ctx); err != nil {
		logger.Error("kas failed", "err", err)
		return 1
	}
	return 0
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...))
}
