package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/stack"
)

// gitlabAgentConfig is a config.yaml as GitLab's agent users write it, with
// sections this agent accepts but does not implement.
const gitlabAgentConfig = `user_access:
  access_as:
    agent: {}
  projects:
  - id: group/project
ci_access:
  groups:
  - id: group
    access_as:
      ci_job: {}
observability:
  logging:
    level: info
    grpc_level: warn
container_scanning:
  cadence: '0 0 * * *'
remote_development:
  enabled: false
  dns_zone: workspaces.example.dev
flux:
  webhook_receiver_url: http://webhook-receiver.flux-system.svc.cluster.local
`

func readyz(t *testing.T, s *stack.Stack) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.AgentObs + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A fresh agentk whose first config.yaml is broken still serves kubectl
// through kas (with the default config) and says why in /readyz; then a
// config.yaml written for GitLab's agent applies, with one warning naming
// what has no effect here.
func TestBrokenFirstConfigThenGitLabConfig(t *testing.T) {
	setup(t)
	ctx := t.Context()
	s, err := stack.New(ctx, t.TempDir(), binDir, cp)
	if err != nil {
		t.Fatal(err)
	}
	broken, err := s.Commit("broken config", map[string]string{stack.AgentConfigPath(): "gitops:\n  manifest_projectz: []\n"})
	if err != nil {
		t.Fatal(err)
	}
	// Flags only GitLab's agentk has (ours are aliases of them).
	s.AgentArgs = []string{"--observability-listen-network=tcp4", "--kas-header", "Cookie: gitlab-canary"}
	if err := s.StartKas(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("kas log:\n%s\nagentk log:\n%s", s.KasLog(), s.AgentLog())
		}
	})
	if err := s.StartAgentk(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "agentk to run the default config", func() bool {
		return strings.Contains(s.AgentLog(), "Config: invalid config.yaml, serving with the default config until a good commit arrives")
	})
	if out := mustKubectl(t, s.Kubeconfig, "", "get", "namespace", "default", "-o", "name"); strings.TrimSpace(out) != "namespace/default" {
		t.Errorf("kubectl through kas with a broken first config: %q", out)
	}
	code, body := readyz(t, s)
	if code != http.StatusOK || !strings.Contains(body, "config: commit "+broken+": invalid config.yaml, running the default config") || !strings.Contains(body, "manifest_projectz") {
		t.Errorf("/readyz = %d %q: want 200 and why the defaults run", code, body)
	}

	good, err := s.Commit("GitLab's config", map[string]string{stack.AgentConfigPath(): gitlabAgentConfig})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "the GitLab config to apply", func() bool {
		return strings.Contains(s.AgentLog(), `msg="Config: new commit" commit=`+good)
	})
	log := s.AgentLog()
	if n := strings.Count(log, "does not implement"); n != 1 ||
		!strings.Contains(log, "they have no effect: observability.logging.grpc_level, container_scanning, remote_development, flux") {
		t.Errorf("want one warning naming the ignored keys, got %d:\n%s", n, log)
	}
	if _, body := readyz(t, s); body != "ok\n" {
		t.Errorf("/readyz after a good commit = %q", body)
	}
	// The probe paths of GitLab's chart.
	for _, p := range []string{"/liveness", "/readiness"} {
		resp, err := http.Get("http://" + s.AgentObs + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
	}
	mustKubectl(t, s.Kubeconfig, "", "get", "namespace", "default")
}
