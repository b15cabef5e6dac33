package kas

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"kubetunnel/api/rpc"
)

// Two manifest projects sharing a repository id are two entries, by the
// name the agent reports, with their own results, retries and pending
// prunes, in the status API and the metrics.
func TestStatusPerProjectName(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newStatusStore(reg)
	s.sent("prod", "group/app", "c1") // before any report: keyed by id
	s.report("prod", &rpc.SyncStatus{ProjectId: "group/app", ProjectName: "group/app@one", DefaultNamespace: "one", CommitId: "c1", Result: "synced", Health: "Healthy"})
	s.report("prod", &rpc.SyncStatus{ProjectId: "group/app", ProjectName: "two", DefaultNamespace: "two", CommitId: "c1", Result: "failed", Reason: "x",
		Attempts: 2, NextRetryUnixMs: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli(),
		PendingPrunes: []*rpc.PendingPrune{{Object: "ConfigMap two/held", Finalizers: []string{"example.com/hold"}, DeletingSinceUnixMs: 1000}}})
	s.sent("prod", "group/app", "c2")
	st := &AgentStatus{Name: "prod"}
	s.fill("prod", st)
	if len(st.Projects) != 2 {
		t.Fatalf("projects: %+v", st.Projects)
	}
	one, two := st.Projects[0], st.Projects[1]
	if one.Name != "group/app@one" || one.DefaultNamespace != "one" || one.SentCommit != "c2" || one.LastSync.Result != "synced" {
		t.Errorf("first: %+v %+v", one, one.LastSync)
	}
	if two.Name != "two" || two.SentCommit != "c2" || two.LastSync.Result != "failed" || two.LastSync.Attempts != 2 ||
		!two.LastSync.NextRetryAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || len(two.LastSync.PendingPrunes) != 1 ||
		two.LastSync.PendingPrunes[0].Finalizers[0] != "example.com/hold" {
		t.Errorf("second: %+v %+v", two, two.LastSync)
	}
	want := `
# HELP kas_gitops_sync_status 1 for the result (synced, failed, stalled, no_manifests_matched) of the latest sync an agent reported for a manifest project (by the project's name), 0 for the others.
# TYPE kas_gitops_sync_status gauge
kas_gitops_sync_status{agent="prod",project="group/app@one",result="failed"} 0
kas_gitops_sync_status{agent="prod",project="group/app@one",result="no_manifests_matched"} 0
kas_gitops_sync_status{agent="prod",project="group/app@one",result="stalled"} 0
kas_gitops_sync_status{agent="prod",project="group/app@one",result="synced"} 1
kas_gitops_sync_status{agent="prod",project="two",result="failed"} 1
kas_gitops_sync_status{agent="prod",project="two",result="no_manifests_matched"} 0
kas_gitops_sync_status{agent="prod",project="two",result="stalled"} 0
kas_gitops_sync_status{agent="prod",project="two",result="synced"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "kas_gitops_sync_status"); err != nil {
		t.Error(err)
	}
}
