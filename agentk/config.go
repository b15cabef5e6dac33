package agentk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"kubetunnel/agentcfg"
	"kubetunnel/api/rpc"
	"kubetunnel/tunnel"
)

// configWatcher follows the agent's config.yaml from kas. A config that
// kas reports invalid is logged and ignored: the last good one keeps
// running, or, when there is none yet, the default config, so that a
// broken first commit does not leave the proxy answering 503.
type configWatcher struct {
	client rpc.ConfigurationClient
	logger *slog.Logger
	level  *slog.LevelVar
	// onConfig is called with every new valid config, in order, and the
	// agent's name as kas knows it.
	onConfig func(agentName, commit string, cfg *agentcfg.Config)
	// onAgentName is called with the agent's name from every response,
	// valid config or not.
	onAgentName func(agentName string)

	mu     sync.Mutex // guards commit, cfg, seen and problem
	commit string
	cfg    *agentcfg.Config
	// seen is the newest commit kas sent, valid or not: a reconnect asks
	// from there so that an invalid commit is not sent again.
	seen string
	// problem says why the config in force is not the newest commit's
	// (empty when it is).
	problem string
}

// current returns the config in force and its commit (nil before the
// first; "" as the commit while the defaults run).
func (w *configWatcher) current() (string, *agentcfg.Config) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.commit, w.cfg
}

// status says why the config in force is not the newest commit's, or "".
func (w *configWatcher) status() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.problem
}

func (w *configWatcher) Run(ctx context.Context) error {
	bo := tunnel.Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Reset: 10 * time.Second}
	for ctx.Err() == nil {
		start := time.Now()
		err := w.watch(ctx)
		if ctx.Err() != nil {
			break
		}
		bo.Connected(time.Since(start))
		w.logger.Debug("Config stream ended; resuming", "err", err)
		t := time.NewTimer(bo.Next())
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return nil
}

func (w *configWatcher) watch(ctx context.Context) error {
	w.mu.Lock()
	seen := w.seen
	w.mu.Unlock()
	stream, err := w.client.GetConfiguration(ctx, &rpc.ConfigurationRequest{CommitId: seen}, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		w.apply(resp)
	}
}

func (w *configWatcher) apply(resp *rpc.ConfigurationResponse) {
	w.mu.Lock()
	w.seen = resp.CommitId
	w.mu.Unlock()
	if w.onAgentName != nil {
		w.onAgentName(resp.AgentName)
	}
	if resp.Error != "" {
		w.reject(resp.CommitId, whatInvalid, resp.Error)
		return
	}
	cfg, err := agentcfg.FromJSON(resp.ConfigJson)
	if err != nil {
		w.reject(resp.CommitId, whatUndecodable, err.Error())
		return
	}
	if w.level != nil {
		w.level.Set(parseLevel(cfg.Observability.Logging.Level))
	}
	w.mu.Lock()
	w.commit, w.cfg, w.problem = resp.CommitId, cfg, ""
	w.mu.Unlock()
	w.logger.Info("Config: new commit", "commit", resp.CommitId)
	if msg := cfg.IgnoredWarning(); msg != "" {
		w.logger.Warn("Config: "+msg, "commit", resp.CommitId, "ignored_keys", cfg.Ignored)
	}
	if w.onConfig != nil {
		w.onConfig(resp.AgentName, resp.CommitId, cfg)
	}
}

// What is wrong with a config from kas.
const (
	whatInvalid     = "invalid config.yaml"
	whatUndecodable = "cannot decode the config from kas"
)

// reject keeps the config in force, or starts the defaults when there is
// none: kas has let the agent connect and its callers in, and the default
// config is what a config project without config.yaml gets.
func (w *configWatcher) reject(commit, what, why string) {
	w.mu.Lock()
	running := w.commit
	if w.cfg == nil {
		cfg := &agentcfg.Config{}
		cfg.Default("")
		w.cfg = cfg
	}
	if running == "" {
		w.problem = fmt.Sprintf("commit %s: %s, running the default config: %s", commit, what, why)
	} else {
		w.problem = fmt.Sprintf("commit %s: %s, running the last good commit %s: %s", commit, what, running, why)
	}
	w.mu.Unlock()
	// The messages are literal so that the README's troubleshooting table
	// can quote them (test/docs).
	switch {
	case running == "" && what == whatInvalid:
		w.logger.Error("Config: invalid config.yaml, serving with the default config until a good commit arrives", "commit", commit, "err", why)
	case running == "":
		w.logger.Error("Config: cannot decode the config from kas, serving with the default config until a good commit arrives", "commit", commit, "err", why)
	case what == whatInvalid:
		w.logger.Error("Config: invalid config.yaml, keeping the last good one", "commit", commit, "running_commit", running, "err", why)
	default:
		w.logger.Error("Config: cannot decode the config from kas, keeping the last good one", "commit", commit, "running_commit", running, "err", why)
	}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
