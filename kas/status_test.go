package kas

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"kubetunnel/api/rpc"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/kas/internal/apijson"
)

func TestStatusAPI(t *testing.T) {
	e, repo := newGitOpsEnv(t, func(c *Config) {
		c.Repositories = append(c.Repositories, repoEntry("group/broken", "file:///nonexistent/repository"))
	})
	manifests := repo.Commit("first", manifestTree)
	e.start()

	// Before the agent connects: listed, nothing known.
	var list struct{ Agents []AgentStatus }
	if code := e.getJSON("/api/v1/agents", &list); code != 200 || len(list.Agents) != 1 || list.Agents[0].Name != agentName ||
		list.Agents[0].ConnectedSessions != 0 || list.Agents[0].Projects == nil {
		t.Fatalf("agents before any connection: %d %+v", code, list)
	}
	var notFound apijson.Error
	if code := e.getJSON("/api/v1/agents/nope", &notFound); code != http.StatusNotFound || !strings.Contains(notFound.Error, `"nope"`) {
		t.Errorf("unknown agent: %d %+v", code, notFound)
	}

	a := e.dialAgent()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfgStream, err := a.config.GetConfiguration(ctx, &rpc.ConfigurationRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cfgResp, err := cfgStream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	w := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject})
	w.next(t, setTimeout)
	_, err = a.gitops.ReportSyncStatus(ctx, &rpc.SyncStatus{
		ProjectId: manifestProject, CommitId: manifests, Result: "synced", Applied: 3, Unchanged: 1, Health: "Healthy",
	})
	if err != nil {
		t.Fatal(err)
	}

	st := e.waitSent(manifests)
	if st.ConnectedSessions != 1 || st.ConfigProject != "group/config" || st.ConfigCommit != cfgResp.CommitId || st.ConfigCommit == "" {
		t.Errorf("agent: %+v, want 1 session and config commit %s", st, cfgResp.CommitId)
	}
	if len(st.Projects) != 1 {
		t.Fatalf("projects: %+v", st.Projects)
	}
	p := st.Projects[0]
	if p.ID != manifestProject || p.SentCommit != manifests || p.SentAt.IsZero() || p.LastSync == nil ||
		p.LastSync.Result != "synced" || p.LastSync.CommitID != manifests || p.LastSync.Applied != 3 ||
		p.LastSync.Unchanged != 1 || p.LastSync.Health != "Healthy" || p.LastSync.ReportedAt.IsZero() {
		t.Errorf("project: %+v %+v", p, p.LastSync)
	}
	syncStatus := func(result string) float64 { return counterValue(t, e, "kas_gitops_sync_status", "result", result) }
	if syncStatus("synced") != 1 || syncStatus("failed") != 0 {
		t.Errorf("kas_gitops_sync_status synced=%v failed=%v", syncStatus("synced"), syncStatus("failed"))
	}

	_, err = a.gitops.ReportSyncStatus(ctx, &rpc.SyncStatus{ProjectId: manifestProject, CommitId: manifests, Result: "failed", Reason: "apply: forbidden"})
	if err != nil {
		t.Fatal(err)
	}
	st = AgentStatus{}
	e.getJSON("/api/v1/agents/"+agentName, &st)
	if r := st.Projects[0].LastSync; r.Result != "failed" || r.Reason != "apply: forbidden" || r.Applied != 0 {
		t.Errorf("after a failed report: %+v", r)
	}
	if syncStatus("synced") != 0 || syncStatus("failed") != 1 {
		t.Errorf("kas_gitops_sync_status after a failure: synced=%v failed=%v", syncStatus("synced"), syncStatus("failed"))
	}
	if !e.kasLog.Contains("apply: forbidden") {
		t.Error("kas did not log the failed sync")
	}

	// A broken config.yaml: the agent keeps its config, the API says why.
	bad := e.repo.Commit("broken", map[string]string{AgentConfigPath(agentName): "gitops:\n  manifest_projectz: []\n"})
	if resp, err := cfgStream.Recv(); err != nil || resp.CommitId != bad || resp.Error == "" {
		t.Fatalf("broken config: %v %+v", err, resp)
	}
	tu.Eventually(t, 5*time.Second, "config error in the status", func() bool {
		st = AgentStatus{}
		e.getJSON("/api/v1/agents/"+agentName, &st)
		return strings.Contains(st.ConfigError, "manifest_projectz")
	})
	if st.ConfigCommit != cfgResp.CommitId {
		t.Errorf("config commit after a broken one: %s, want the last good %s", st.ConfigCommit, cfgResp.CommitId)
	}

	// Git polling metrics: fetches timed per repository, failures counted.
	tu.Eventually(t, 5*time.Second, "a failed poll of group/broken", func() bool {
		return counterValue(t, e, "kas_git_poll_errors_total", "repository", "group/broken") >= 1
	})
	if v := counterValue(t, e, "kas_git_poll_errors_total", "repository", manifestProject); v != 0 {
		t.Errorf("kas_git_poll_errors_total{repository=%q} = %v", manifestProject, v)
	}
	if n := histogramCount(t, e, "kas_git_poll_duration_seconds", manifestProject); n < 1 {
		t.Errorf("kas_git_poll_duration_seconds has %d samples for %s", n, manifestProject)
	}

	// The rest of the observability listener is unchanged.
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		resp, err := http.Get(e.obsURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (path == "/metrics" && !strings.Contains(string(body), "kas_gitops_sync_status")) {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}
}

func histogramCount(t *testing.T, e *env, name, repository string) uint64 {
	t.Helper()
	// A nil series (none yet) has a count of 0.
	return tu.Series(t, e.kas.Metrics(), name, "repository", repository).GetHistogram().GetSampleCount()
}
