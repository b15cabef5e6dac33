package kas_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	trackerrpc "kubetunnel/api/gitlab/agenttracker/rpc"
	"kubetunnel/internal/gitlab"
	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/fakegitlab"
	"kubetunnel/internal/testutil/kascluster"
	"kubetunnel/kas"
	"kubetunnel/tunnel"
	"kubetunnel/version"
)

// haSession keeps keepalives short but tolerant of a busy machine (-race):
// these tests are about replicas, not dead links.
var haSession = tunnel.SessionConfig{KeepAliveInterval: time.Second, KeepAliveTimeout: 5 * time.Second}

// TestGitLabTrackerAcrossReplicas: with Redis, each kas replica's api
// listener lists the agent's connections to every replica, and a
// connection leaves the list when it closes.
func TestGitLabTrackerAcrossReplicas(t *testing.T) {
	gl := fakegitlab.New(t)
	cfgProj := gl.AddProject("group/agents", map[string]string{".gitlab/agents/prod/config.yaml": "{}\n"})
	agent := gl.AddAgent("prod", cfgProj)
	token := gl.IssueToken(agent)
	ws := true
	base := &kas.Config{
		Agent: kas.AgentSection{Listen: kas.AgentListen{Websocket: &ws, DrainTimeout: 5 * time.Second}},
		GitLab: &kas.GitLabSection{
			Address: gl.URL, AuthenticationSecretFile: gl.SecretFile, CACertificateFile: gl.CAFile,
			Git: kas.GitLabGit{Username: gl.GitUsername, PasswordFile: gl.GitPasswordFile},
		},
	}
	c := kascluster.Start(t, base, kascluster.Options{Replicas: 2, Session: haSession, Mutate: func(i int, cfg *kas.Config) {
		cfg.API = &kas.APISection{Listen: kas.APIListen{Address: "127.0.0.1:0", AuthenticationSecretFile: gl.SecretFile}}
		cfg.Git.CacheDir = filepath.Join(t.TempDir(), "cache")
	}})
	var sessions []interface{ Close() error }
	for _, r := range c.Replicas {
		d := &tunnel.Dialer{
			Address: r.AgentAddress(),
			Hello:   tunnel.Hello{Token: token, AgentVersion: version.Version, Protocol: tunnel.MaxProtocol},
			Session: haSession,
		}
		s, err := d.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sessions = append(sessions, s)
	}
	key := strconv.FormatInt(agent.ID, 10)
	testutil.Eventually(t, 10*time.Second, "a session on each replica", func() bool { return c.ConnectedSessions(key) == 2 })

	list := func(r *kascluster.Replica) []int64 {
		t.Helper()
		cc, err := grpc.NewClient("passthrough:///"+r.Server().Addr("api").String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+gitlab.SignJWT(gl.Secret, "gitlab.example.com", gitlab.AudienceKas, time.Now()))
		resp, err := trackerrpc.NewAgentTrackerClient(cc).GetConnectedAgentsByAgentIDs(ctx, &trackerrpc.GetConnectedAgentsByAgentIDsRequest{AgentIds: []int64{agent.ID}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, a := range resp.Agents {
			if a.AgentId != agent.ID || a.ProjectId != cfgProj.ID {
				t.Fatalf("tracker entry %v", a)
			}
			ids = append(ids, a.ConnectionId)
		}
		return ids
	}
	for i, r := range c.Replicas {
		// A replica writes a connection to Redis just after it counts it.
		var ids []int64
		testutil.Eventually(t, 10*time.Second, "both connections listed", func() bool { ids = list(r); return len(ids) == 2 })
		if ids[0] == ids[1] {
			t.Fatalf("replica %d lists connections %v, want 2 distinct", i, ids)
		}
	}
	sessions[1].Close()
	testutil.Eventually(t, 10*time.Second, "the closed connection to leave the tracker", func() bool { return len(list(c.Replicas[0])) == 1 })
}
