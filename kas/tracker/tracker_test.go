package tracker

import (
	"strings"
	"testing"
	"time"

	"kubetunnel/kas/identity"
	"kubetunnel/tunnel"
)

// The tracker's record of a connection carries what agentk said in its
// hello, never its token.
func TestConnectionInfo(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	c := ConnectionInfo(identity.Agent{ID: 7, ConfigProjectID: 3}, tunnel.Hello{Token: "secret", AgentVersion: "v1.2.3",
		PodNamespace: "gitlab-agent", PodName: "agentk-7d9f", KubernetesVersion: "v1.37.0", GitCommit: "abc1234"}, at)
	m := c.GetAgentMeta()
	if c.AgentId != 7 || c.ProjectId != 3 || c.ConnectionId == 0 || !c.ConnectedAt.AsTime().Equal(at) ||
		m.GetVersion() != "v1.2.3" || m.GetPodNamespace() != "gitlab-agent" || m.GetPodName() != "agentk-7d9f" || m.GetCommitId() != "abc1234" ||
		m.GetKubernetesVersion().GetGitVersion() != "v1.37.0" || m.GetKubernetesVersion().GetMajor() != "1" || m.GetKubernetesVersion().GetMinor() != "37" {
		t.Fatalf("connectionInfo = %v", c)
	}
	if strings.Contains(c.String(), "secret") {
		t.Fatal("the token is in the tracker record")
	}
}
