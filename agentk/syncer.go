package agentk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"k8s.io/client-go/rest"

	"kubetunnel/agentcfg"
	"kubetunnel/gitops/apply"
)

// defaultSyncer applies manifests with gitops-engine (gitops/apply), with
// one cluster cache for the whole agent.
func defaultSyncer(cfg *rest.Config, logger *slog.Logger) SyncerFactory {
	return func(agentName string) (Syncer, func(context.Context) error, error) {
		if agentName == "" {
			return nil, nil, errors.New("kas did not say the agent's name (kas older than agentk?)")
		}
		a, err := apply.New(cfg, agentName, logger)
		if err != nil {
			return nil, nil, err
		}
		return applySyncer{a}, a.Run, nil
	}
}

type applySyncer struct{ a *apply.Applier }

func (s applySyncer) Sync(ctx context.Context, p agentcfg.ManifestProject, commit string, files []ManifestFile) SyncResult {
	fs := make([]apply.File, 0, len(files))
	for _, f := range files {
		fs = append(fs, apply.File{Path: f.Path, Data: f.Data})
	}
	objs, err := s.a.Parse(fs, p.DefaultNamespace)
	if err != nil {
		return SyncResult{Err: fmt.Errorf("%w (nothing was applied or pruned)", err)}
	}
	res, err := s.a.Sync(ctx, apply.ProjectFromConfig(p), commit, objs)
	if err != nil {
		return SyncResult{Err: err}
	}
	r := SyncResult{Applied: res.Applied, Pruned: res.Pruned, Unchanged: res.Unchanged, Health: res.Health}
	if res.Failed {
		r.Err = errors.New(res.Reason)
	}
	return r
}
