package agentk

import (
	"context"
	"errors"
	"log/slog"

	"k8s.io/client-go/rest"

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
		return a, a.Run, nil
	}
}

var _ Syncer = (*apply.Applier)(nil)
