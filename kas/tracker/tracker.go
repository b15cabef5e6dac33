package tracker

import (
	"context"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"kubetunnel/api/gitlab/agenttracker"
	"kubetunnel/api/gitlab/entity"
	"kubetunnel/kas/identity"
	"kubetunnel/tunnel"
)

// Tracker records the agentk connections of GitLab agents for
// GitLab's AgentTracker service. Without Redis it knows this replica's
// connections; with Redis every replica writes its own connections into
// two hashes (by agent id and by config project id) and reads everyone's.
// Each entry carries its expiry: a replica that dies without cleaning up
// leaves entries that readers ignore once ttl has passed, and the
// replica's refresh loop rewrites live ones every refresh period.
type Tracker struct {
	redis   *redis.Client // nil: this replica only
	prefix  string
	ttl     time.Duration
	refresh time.Duration
	timeout time.Duration
	logger  *slog.Logger
	now     func() time.Time

	mu    sync.Mutex                                 // guards local
	local map[int64]*agenttracker.ConnectedAgentInfo // by connection id
}

// Config is what a Tracker needs; without Redis only Logger.
type Config struct {
	// Redis is shared by the replicas (nil: this replica only).
	Redis *redis.Client
	// KeyPrefix is redis.key_prefix; the tracker's keys start with
	// "<KeyPrefix>:agent_tracker".
	KeyPrefix string
	// TTL is how long an entry counts without a refresh
	// (redis.agent_ttl), Refresh how often this replica rewrites its own
	// (redis.refresh_period), Timeout the bound of one Redis call
	// (redis.timeout).
	TTL, Refresh, Timeout time.Duration
	Logger                *slog.Logger
}

// New makes a Tracker; Run keeps its Redis entries fresh.
func New(cfg Config) *Tracker {
	return &Tracker{
		redis: cfg.Redis, prefix: cfg.KeyPrefix + ":agent_tracker", ttl: cfg.TTL, refresh: cfg.Refresh, timeout: cfg.Timeout,
		logger: cfg.Logger, now: time.Now, local: map[int64]*agenttracker.ConnectedAgentInfo{},
	}
}

// ConnectionInfo builds the tracker's record of a new connection from
// what agentk said in its hello.
func ConnectionInfo(a identity.Agent, h tunnel.Hello, connected time.Time) *agenttracker.ConnectedAgentInfo {
	return &agenttracker.ConnectedAgentInfo{
		AgentMeta: &entity.AgentMeta{
			Version:           h.AgentVersion,
			CommitId:          h.GitCommit,
			PodNamespace:      h.PodNamespace,
			PodName:           h.PodName,
			KubernetesVersion: kubernetesVersion(h.KubernetesVersion),
		},
		ConnectedAt:  timestamppb.New(connected),
		ConnectionId: rand.Int64(),
		AgentId:      a.ID,
		ProjectId:    a.ConfigProjectID,
	}
}

// kubernetesVersion splits "v1.31.2" into major 1, minor 31.
func kubernetesVersion(git string) *entity.KubernetesVersion {
	if git == "" {
		return nil
	}
	v := &entity.KubernetesVersion{GitVersion: git}
	parts := strings.SplitN(strings.TrimPrefix(git, "v"), ".", 3)
	if len(parts) >= 2 {
		v.Major, v.Minor = parts[0], parts[1]
	}
	return v
}

func (t *Tracker) agentKey(id int64) string {
	return t.prefix + ":agent:" + strconv.FormatInt(id, 10)
}
func (t *Tracker) projectKey(id int64) string {
	return t.prefix + ":project:" + strconv.FormatInt(id, 10)
}

// Register records a connection; the returned func removes it.
func (t *Tracker) Register(info *agenttracker.ConnectedAgentInfo) (unregister func()) {
	t.mu.Lock()
	t.local[info.ConnectionId] = info
	t.mu.Unlock()
	t.write(info)
	return func() {
		t.mu.Lock()
		delete(t.local, info.ConnectionId)
		t.mu.Unlock()
		if t.redis == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
		defer cancel()
		field := strconv.FormatInt(info.ConnectionId, 10)
		_, err := t.redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HDel(ctx, t.agentKey(info.AgentId), field)
			p.HDel(ctx, t.projectKey(info.ProjectId), field)
			return nil
		})
		if err != nil {
			t.logger.Warn("Agent tracker: removing a connection from Redis (readers drop it after redis.agent_ttl)", "agent_id", info.AgentId, "err", err)
		}
	}
}

// write puts one connection into Redis with its expiry.
func (t *Tracker) write(infos ...*agenttracker.ConnectedAgentInfo) {
	if t.redis == nil || len(infos) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	expires := t.now().Add(t.ttl)
	_, err := t.redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, info := range infos {
			b, err := proto.Marshal(info)
			if err != nil {
				return err
			}
			v := binary.BigEndian.AppendUint64(nil, uint64(expires.UnixMilli()))
			v = append(v, b...)
			field := strconv.FormatInt(info.ConnectionId, 10)
			for _, key := range []string{t.agentKey(info.AgentId), t.projectKey(info.ProjectId)} {
				p.HSet(ctx, key, field, v)
				p.Expire(ctx, key, t.ttl)
			}
		}
		return nil
	})
	if err != nil {
		t.logger.Warn("Agent tracker: writing connections to Redis", "err", err)
	}
}

// Run rewrites this replica's connections every refresh period.
func (t *Tracker) Run(ctx context.Context) error {
	if t.redis == nil {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(t.refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.mu.Lock()
			infos := make([]*agenttracker.ConnectedAgentInfo, 0, len(t.local))
			for _, i := range t.local {
				infos = append(infos, i)
			}
			t.mu.Unlock()
			t.write(infos...)
		}
	}
}

// byAgent and byProject list connections, everyone's with Redis.
func (t *Tracker) byAgent(ctx context.Context, id int64) ([]*agenttracker.ConnectedAgentInfo, error) {
	return t.list(ctx, t.agentKey(id), func(i *agenttracker.ConnectedAgentInfo) bool { return i.AgentId == id })
}

func (t *Tracker) byProject(ctx context.Context, id int64) ([]*agenttracker.ConnectedAgentInfo, error) {
	return t.list(ctx, t.projectKey(id), func(i *agenttracker.ConnectedAgentInfo) bool { return i.ProjectId == id })
}

func (t *Tracker) list(ctx context.Context, key string, match func(*agenttracker.ConnectedAgentInfo) bool) ([]*agenttracker.ConnectedAgentInfo, error) {
	var out []*agenttracker.ConnectedAgentInfo
	if t.redis == nil {
		t.mu.Lock()
		defer t.mu.Unlock()
		for _, i := range t.local {
			if match(i) {
				out = append(out, proto.Clone(i).(*agenttracker.ConnectedAgentInfo))
			}
		}
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	all, err := t.redis.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	now := t.now().UnixMilli()
	var expired []string
	for field, v := range all {
		if len(v) < 8 || int64(binary.BigEndian.Uint64([]byte(v[:8]))) < now {
			expired = append(expired, field)
			continue
		}
		var info agenttracker.ConnectedAgentInfo
		if err := proto.Unmarshal([]byte(v[8:]), &info); err != nil {
			expired = append(expired, field)
			continue
		}
		if match(&info) {
			out = append(out, &info)
		}
	}
	if len(expired) > 0 {
		t.redis.HDel(ctx, key, expired...)
	}
	return out, nil
}
