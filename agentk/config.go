package agentk

import (
	"context"
	"errors"
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
// running.
type configWatcher struct {
	client rpc.ConfigurationClient
	logger *slog.Logger
	level  *slog.LevelVar
	// onConfig is called with every new valid config, in order, and the
	// agent's name as kas knows it.
	onConfig func(agentName, commit string, cfg *agentcfg.Config)

	mu     sync.Mutex // guards commit and cfg
	commit string
	cfg    *agentcfg.Config
}

// current returns the config in force and its commit (nil before the first).
func (w *configWatcher) current() (string, *agentcfg.Config) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.commit, w.cfg
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
	commit, _ := w.current()
	stream, err := w.client.GetConfiguration(ctx, &rpc.ConfigurationRequest{CommitId: commit}, grpc.WaitForReady(true))
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
	prev, _ := w.current()
	if resp.Error != "" {
		w.logger.Error("Config: invalid config.yaml, keeping the last good one", "commit", resp.CommitId, "running_commit", prev, "err", resp.Error)
		return
	}
	cfg, err := agentcfg.FromJSON(resp.ConfigJson)
	if err != nil {
		w.logger.Error("Config: cannot decode the config from kas, keeping the last good one", "commit", resp.CommitId, "err", err)
		return
	}
	if w.level != nil {
		w.level.Set(parseLevel(cfg.Observability.Logging.Level))
	}
	w.mu.Lock()
	w.commit, w.cfg = resp.CommitId, cfg
	w.mu.Unlock()
	w.logger.Info("Config: new commit", "commit", resp.CommitId)
	if msg := cfg.IgnoredWarning(); msg != "" {
		w.logger.Warn("Config: "+msg, "commit", resp.CommitId, "ignored_keys", cfg.Ignored)
	}
	if w.onConfig != nil {
		w.onConfig(resp.AgentName, resp.CommitId, cfg)
	}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
