package gitops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kubetunnel/api/rpc"
	"kubetunnel/gitops/gitrepo"
	"kubetunnel/gitops/manifests"
	"kubetunnel/kas/identity"
)

const (
	// objectChunkSize is the most file data one Object message carries,
	// well under gRPC's default 4 MiB receive limit.
	objectChunkSize = 1 << 20
	// refWaitTimeout is how long a ref may stay unresolvable (not fetched
	// yet, or not pushed yet) before the stream ends with NotFound.
	refWaitTimeout = 30 * time.Second
)

// Server serves the agents' GitOps and Configuration gRPC services: each
// agent's config.yaml from its config project (configuration.go), the
// manifests of its manifest projects, and its sync reports.
//
// GetObjectsToSynchronize, as kas serves it:
//
//   - project_id must be a repository the agent may read (standalone: its
//     config project or one its agents[].projects lists); another id ends
//     the call with NotFound naming it. A malformed ref is InvalidArgument;
//     a bad glob is InvalidArgument and too many globs FailedPrecondition
//     (max_number_of_paths), both before anything is sent.
//   - kas resolves ref (empty: the default branch) in its mirror. Whenever
//     the commit differs from the last one sent on this stream (at first:
//     the request's commit_id), it sends one set: a Header with the
//     commit, then the selected files sorted by path, then a Trailer.
//     A set always holds every selected file of the commit, never a diff;
//     a set with no Objects means no file matches. Then kas waits for the
//     repository to change (poll or webhook) and repeats. A commit that
//     does not move the followed ref sends nothing.
//   - Object.source is the file's path with a leading "/"
//     ("/manifests/app.yaml"). A file larger than 1 MiB is split into
//     consecutive Objects with the same source, each carrying at most
//     1 MiB of data in order; the receiver concatenates consecutive Objects
//     with the same source. Sources are unique within a set, so a change of
//     source starts the next file. An empty file is one Object with no
//     data. Every message stays under gRPC's default 4 MiB limit.
//   - When the commit's selection breaks a limit (max_manifest_file_size,
//     max_total_manifest_file_size, max_number_of_files), kas sends no set
//     and ends the stream with FailedPrecondition; the message names the
//     limit and the file, e.g. `manifest file "/big.yaml" is 6.2 MiB, over
//     max_manifest_file_size (5 MiB)`. The agent keeps what it applied
//     and calls again later: a fixed commit is then sent as usual.
//   - A ref that cannot be resolved for refWaitTimeout (a branch that does
//     not exist, a repository kas could not fetch yet) ends the stream
//     with NotFound; a set interrupted by an error has no Trailer and must
//     be dropped by the agent.
//
// ReportSyncStatus stores the report as the project's latest for the
// calling agent (GET /api/v1/agents, kas_gitops_sync_status). project_id
// must be a configured repository (NotFound) and result "synced" or
// "failed" (InvalidArgument).
type Server struct {
	rpc.UnimplementedGitOpsServer
	rpc.UnimplementedConfigurationServer

	cfg    Config
	limits manifests.Limits

	mu     sync.Mutex        // guards posted
	posted map[string]string // agent key → config commit posted to GitLab

	// ChunkSize is the most file data one Object message carries, and
	// RefWait how long a ref may stay unresolvable; tests shorten them
	// before serving.
	ChunkSize int
	RefWait   time.Duration
}

// Config is what a Server needs.
type Config struct {
	// Repositories are the repositories kas mirrors.
	Repositories Repositories
	// Access checks that an agent may read a manifest project and returns
	// the repository id to read it from, or a gRPC status saying why not.
	Access func(ctx context.Context, agent identity.Agent, project string) (string, error)
	// OpenConfigProject makes sure kas mirrors an agent's config project
	// before it is read (with gitlab:, it opens the GitLab project's
	// mirror); nil when there is nothing to open.
	OpenConfigProject func(id string) error
	// Limits are agent.gitops.max_*; zero fields mean the defaults.
	Limits manifests.Limits
	// Status records what was sent and reported, for the status API.
	Status StatusRecorder
	// GitLab, with gitlab:, is told every new valid config commit
	// (agent_configuration); nil without gitlab:.
	GitLab ConfigPoster
	Logger *slog.Logger
}

// Repositories is where configs and manifests are read: kas's mirrors.
type Repositories interface {
	Resolve(id string, ref gitrepo.Ref) (string, error)
	ReadFile(id, commit, path string) ([]byte, error)
	Walk(id, commit string, fn gitrepo.WalkFunc) error
	// Subscribe notifies when repository id may have changed.
	Subscribe(id string) (changed <-chan struct{}, cancel func())
}

// StatusRecorder keeps what the status API shows of an agent's manifest
// projects (agent is the agent's key, project the repository id or, in
// a report, the project's name).
type StatusRecorder interface {
	Sent(agent, project, commit string)
	StreamError(agent, project, msg string)
	Report(agent string, st *rpc.SyncStatus) error
}

// ConfigPoster tells GitLab an agent's config (*gitlab.Client).
type ConfigPoster interface {
	PostAgentConfiguration(ctx context.Context, agentID int64, config json.RawMessage) error
}

// New makes a Server; Register adds its services to a gRPC server.
func New(cfg Config) *Server {
	return &Server{
		cfg:       cfg,
		limits:    cfg.Limits.WithDefaults(),
		posted:    map[string]string{},
		ChunkSize: objectChunkSize,
		RefWait:   refWaitTimeout,
	}
}

var (
	_ rpc.GitOpsServer        = (*Server)(nil)
	_ rpc.ConfigurationServer = (*Server)(nil)
)

// Register registers the GitOps and Configuration services on r.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	rpc.RegisterGitOpsServer(r, s)
	rpc.RegisterConfigurationServer(r, s)
}

func (s *Server) GetObjectsToSynchronize(req *rpc.ObjectsToSynchronizeRequest, stream rpc.GitOps_GetObjectsToSynchronizeServer) error {
	ctx := stream.Context()
	agent, ok := identity.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "not an agent")
	}
	project := req.GetProjectId()
	repoID, err := s.cfg.Access(ctx, agent, project)
	if err != nil {
		s.cfg.Logger.Warn("Manifest project refused: nothing is sent to the agent", append(agent.IDAttrs(), "project", project, "reason", status.Convert(err).Message())...)
		return s.fail(agent, project, err)
	}
	ref, err := decodeRef(req.GetRef())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "manifest project %q: %v", project, err)
	}
	matcher, err := manifests.NewMatcher(req.GetGlobs(), s.limits.MaxPaths)
	if err != nil {
		return s.fail(agent, project, selectionStatus(project, err))
	}
	log := s.cfg.Logger.With(append(agent.IDAttrs(), "project", project, "ref", ref.String())...)
	changed, cancel := s.cfg.Repositories.Subscribe(repoID)
	defer cancel()

	last := req.GetCommitId()
	var missingSince time.Time       // when ref first failed to resolve
	wait := time.NewTimer(time.Hour) // armed only while ref is missing
	wait.Stop()
	defer wait.Stop()
	for {
		commit, err := s.cfg.Repositories.Resolve(repoID, ref)
		switch {
		case errors.Is(err, gitrepo.ErrNotFound):
			if missingSince.IsZero() {
				missingSince = time.Now()
				log.Debug("Manifest project ref not available yet", "err", err)
			}
			left := s.RefWait - time.Since(missingSince)
			if left <= 0 {
				return s.fail(agent, project, status.Errorf(codes.NotFound, "%v: check gitops.manifest_projects[].ref, and that kas can fetch the repository", err))
			}
			wait.Reset(left)
		case err != nil:
			return s.fail(agent, project, status.Errorf(codes.Unavailable, "%v", err))
		case commit != last:
			missingSince = time.Time{}
			wait.Stop()
			if err := s.sendSet(stream, repoID, commit, matcher, log); err != nil {
				if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
					log.Warn("Manifest project commit not sent", "commit", commit, "err", st.Message())
					return s.fail(agent, project, err)
				}
				return err
			}
			s.cfg.Status.Sent(agent.Key, project, commit)
			last = commit
		default:
			missingSince = time.Time{}
			wait.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-wait.C:
		}
	}
}

// sendSet sends the Header, Objects and Trailer of one commit. Limits are
// checked before anything is sent; files are read one at a time.
func (s *Server) sendSet(stream rpc.GitOps_GetObjectsToSynchronizeServer, project, commit string, m *manifests.Matcher, log *slog.Logger) error {
	files, err := manifests.Select(s.cfg.Repositories, project, commit, m, s.limits)
	if err != nil {
		return selectionStatus(project, err)
	}
	start := time.Now()
	err = stream.Send(&rpc.ObjectsToSynchronizeResponse{Message: &rpc.ObjectsToSynchronizeResponse_Header_{
		Header: &rpc.ObjectsToSynchronizeResponse_Header{CommitId: commit},
	}})
	if err != nil {
		return err
	}
	var total int
	for _, f := range files {
		data, err := f.Read()
		if err != nil {
			return status.Errorf(codes.Unavailable, "manifest project %q: %v", project, err)
		}
		total += len(data)
		for off := 0; ; off += s.ChunkSize {
			chunk := data[off:min(off+s.ChunkSize, len(data))]
			err := stream.Send(&rpc.ObjectsToSynchronizeResponse{Message: &rpc.ObjectsToSynchronizeResponse_Object_{
				Object: &rpc.ObjectsToSynchronizeResponse_Object{Source: f.Path, Data: chunk},
			}})
			if err != nil {
				return err
			}
			if off+len(chunk) >= len(data) {
				break
			}
		}
	}
	err = stream.Send(&rpc.ObjectsToSynchronizeResponse{Message: &rpc.ObjectsToSynchronizeResponse_Trailer_{
		Trailer: &rpc.ObjectsToSynchronizeResponse_Trailer{},
	}})
	if err != nil {
		return err
	}
	log.Info("Sent manifests", "commit", commit, "files", len(files), "bytes", total, "duration", time.Since(start))
	return nil
}

// fail records why a stream ended, for the status API, and returns err.
func (s *Server) fail(agent identity.Agent, project string, err error) error {
	s.cfg.Status.StreamError(agent.Key, project, status.Convert(err).Message())
	return err
}

// selectionStatus maps a manifests error to the gRPC status the agent gets.
func selectionStatus(project string, err error) error {
	switch {
	case errors.Is(err, manifests.ErrLimit):
		return status.Errorf(codes.FailedPrecondition, "manifest project %q: %v", project, err)
	case errors.Is(err, manifests.ErrInvalidGlob):
		return status.Errorf(codes.InvalidArgument, "manifest project %q: %v", project, err)
	default:
		return status.Errorf(codes.Unavailable, "manifest project %q: %v", project, err)
	}
}

// decodeRef turns the wire ref into a gitrepo.Ref, checking that a commit
// is a full SHA (an abbreviated one cannot be resolved in a mirror).
func decodeRef(s string) (gitrepo.Ref, error) {
	branch, tag, commit, err := rpc.DecodeRef(s)
	if err != nil {
		return gitrepo.Ref{}, err
	}
	if commit != "" && !plumbing.IsHash(commit) {
		return gitrepo.Ref{}, fmt.Errorf("ref %q: want a full commit SHA (40 hex digits)", s)
	}
	return gitrepo.Ref{Branch: branch, Tag: tag, Commit: commit}, nil
}

// SyncResults are the values SyncStatus.result may take (rpc.proto).
var SyncResults = []string{"synced", "failed", "stalled", "no_manifests_matched"}

// ProjectName is the key of a reported project: its name, or its id from
// agents that send none.
func ProjectName(st *rpc.SyncStatus) string {
	if st.GetProjectName() != "" {
		return st.GetProjectName()
	}
	return st.GetProjectId()
}

// maxProjectNameLen bounds a reported project name (a label value of
// kas's metrics and a key of the status store).
const maxProjectNameLen = 253

func (s *Server) ReportSyncStatus(ctx context.Context, st *rpc.SyncStatus) (*rpc.SyncStatusAck, error) {
	agent, ok := identity.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "not an agent")
	}
	if _, err := s.cfg.Access(ctx, agent, st.GetProjectId()); err != nil {
		return nil, err
	}
	if !slices.Contains(SyncResults, st.GetResult()) {
		return nil, status.Errorf(codes.InvalidArgument, "result %q: want one of %q", st.GetResult(), SyncResults)
	}
	if n := len(st.GetProjectName()); n > maxProjectNameLen {
		return nil, status.Errorf(codes.InvalidArgument, "project name is %d bytes long, at most %d", n, maxProjectNameLen)
	}
	if err := s.cfg.Status.Report(agent.Key, st); err != nil {
		return nil, status.Error(codes.ResourceExhausted, err.Error())
	}
	log := s.cfg.Logger.With(append(agent.IDAttrs(), "project", ProjectName(st), "commit", st.GetCommitId())...)
	if st.GetResult() != "synced" {
		log.Warn("Agent sync failed", "result", st.GetResult(), "reason", st.GetReason())
	} else {
		log.Debug("Agent synced", "applied", st.GetApplied(), "pruned", st.GetPruned(), "unchanged", st.GetUnchanged(), "health", st.GetHealth())
	}
	return &rpc.SyncStatusAck{}, nil
}
