package tracker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"kubetunnel/api/gitlab/agenttracker"
	trackerrpc "kubetunnel/api/gitlab/agenttracker/rpc"
	"kubetunnel/api/gitlab/notifications"
	"kubetunnel/gitops/gitrepo"
	"kubetunnel/internal/gitlab"
)

// maxAgentIDsPerRequest bounds GetConnectedAgentsByAgentIDs.
const maxAgentIDsPerRequest = 1000

// APIConfig is what the api listener's server needs.
type APIConfig struct {
	// SecretFile is api.listen.authentication_secret_file, the key of
	// GitLab's JWT.
	SecretFile string
	// CertificateFile and KeyFile, when set, serve TLS.
	CertificateFile, KeyFile string
	Tracker                  *Tracker
	// Trigger asks for an immediate fetch of a project kas mirrors (by
	// full path); an error wrapping gitrepo.ErrUnknownRepository means kas
	// does not mirror it.
	Trigger func(fullPath string) error
	Logger  *slog.Logger
}

// NewAPIServer is the api listener's gRPC server: GitLab's AgentTracker
// and Notifications, behind GitLab's JWT (metadata "authorization: Bearer
// <JWT>", HS256 with api.listen.authentication_secret_file, aud
// gitlab-kas). GitLab sets iss to its host name, so iss is not checked.
func NewAPIServer(cfg APIConfig) (*grpc.Server, error) {
	logger := cfg.Logger
	secret, err := gitlab.ReadSecretFile(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("api.listen.authentication_secret_file: %w", err)
	}
	auth := &jwtAuth{secret: secret, logger: logger, now: time.Now}
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(auth.unary), grpc.ChainStreamInterceptor(auth.stream)}
	if cfg.CertificateFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertificateFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("api listener TLS: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	}
	srv := grpc.NewServer(opts...)
	trackerrpc.RegisterAgentTrackerServer(srv, &trackerServer{tracker: cfg.Tracker})
	notifications.RegisterNotificationsServer(srv, &notificationsServer{trigger: cfg.Trigger, logger: logger})
	return srv, nil
}

// jwtAuth checks GitLab's JWT on every call.
type jwtAuth struct {
	secret []byte
	logger *slog.Logger
	now    func() time.Time
}

func (a *jwtAuth) check(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return status.Error(codes.Unauthenticated, "missing authorization metadata (Bearer JWT)")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return status.Error(codes.Unauthenticated, "authorization is not Bearer")
	}
	if err := gitlab.VerifyJWT(a.secret, strings.TrimSpace(tok), "", gitlab.AudienceKas, a.now()); err != nil {
		a.logger.Warn("api listener: call refused", "method", method, "err", err)
		return status.Error(codes.Unauthenticated, "invalid JWT")
	}
	return nil
}

func (a *jwtAuth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *jwtAuth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// trackerServer is GitLab's AgentTracker.
type trackerServer struct {
	trackerrpc.UnimplementedAgentTrackerServer
	tracker *Tracker
}

func (s *trackerServer) GetConnectedAgents(ctx context.Context, req *trackerrpc.GetConnectedAgentsRequest) (*trackerrpc.GetConnectedAgentsResponse, error) {
	var infos []*agenttracker.ConnectedAgentInfo
	var err error
	switch r := req.GetRequest().(type) {
	case *trackerrpc.GetConnectedAgentsRequest_AgentId:
		infos, err = s.tracker.byAgent(ctx, r.AgentId)
	case *trackerrpc.GetConnectedAgentsRequest_ProjectId:
		infos, err = s.tracker.byProject(ctx, r.ProjectId)
	default:
		return nil, status.Error(codes.InvalidArgument, "set project_id or agent_id")
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "agent tracker: %v", err)
	}
	return &trackerrpc.GetConnectedAgentsResponse{Agents: infos}, nil
}

func (s *trackerServer) GetConnectedAgentsByAgentIDs(ctx context.Context, req *trackerrpc.GetConnectedAgentsByAgentIDsRequest) (*trackerrpc.GetConnectedAgentsByAgentIDsResponse, error) {
	if len(req.GetAgentIds()) > maxAgentIDsPerRequest {
		return nil, status.Errorf(codes.InvalidArgument, "%d agent ids, at most %d per call", len(req.GetAgentIds()), maxAgentIDsPerRequest)
	}
	resp := &trackerrpc.GetConnectedAgentsByAgentIDsResponse{}
	seen := map[int64]bool{}
	for _, id := range req.GetAgentIds() {
		if seen[id] {
			continue
		}
		seen[id] = true
		infos, err := s.tracker.byAgent(ctx, id)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "agent tracker: %v", err)
		}
		resp.Agents = append(resp.Agents, infos...)
	}
	return resp, nil
}

// notificationsServer is GitLab's Notifications: a push fetches the
// project at once, if kas mirrors it.
type notificationsServer struct {
	notifications.UnimplementedNotificationsServer
	trigger func(fullPath string) error
	logger  *slog.Logger
}

func (s *notificationsServer) GitPushEvent(_ context.Context, req *notifications.GitPushEventRequest) (*notifications.GitPushEventResponse, error) {
	path := req.GetProject().GetFullPath()
	if path == "" {
		return nil, status.Error(codes.InvalidArgument, "project.full_path is required")
	}
	err := s.trigger(path)
	switch {
	case errors.Is(err, gitrepo.ErrUnknownRepository):
		s.logger.Debug("Git push event for a project kas does not mirror", "project", path)
	case err != nil:
		return nil, status.Errorf(codes.Internal, "%v", err)
	default:
		s.logger.Info("Git push event: fetching the project now", "project", path, "project_id", req.GetProject().GetId())
	}
	return &notifications.GitPushEventResponse{}, nil
}

// ServeAPI serves the api listener until ctx is done.
func ServeAPI(ctx context.Context, srv *grpc.Server, ln net.Listener) error {
	stop := context.AfterFunc(ctx, srv.Stop)
	defer stop()
	err := srv.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) || ctx.Err() != nil {
		return nil
	}
	return err
}
