package kas

import (
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"kubetunnel/kas/tracker"
)

// newTracker makes the agent tracker, shared through Redis when client
// is set (several replicas).
func (s *Server) newTracker(client *redis.Client) *tracker.Tracker {
	cfg := tracker.Config{Redis: client, Logger: s.logger}
	if r := s.cfg.Redis; r != nil {
		cfg.KeyPrefix, cfg.TTL, cfg.Refresh, cfg.Timeout = r.KeyPrefix, r.AgentTTL, r.RefreshPeriod, r.Timeout
	}
	return tracker.New(cfg)
}

// newAPIServer is the api listener's server (api: in the config).
func (s *Server) newAPIServer() (*grpc.Server, error) {
	l := s.cfg.API.Listen
	return tracker.NewAPIServer(tracker.APIConfig{
		SecretFile:      l.AuthenticationSecretFile,
		CertificateFile: l.CertificateFile,
		KeyFile:         l.KeyFile,
		Tracker:         s.tracker,
		Trigger:         s.repoSet.Trigger,
		Logger:          s.logger,
	})
}
