package status

import (
	"regexp"
	"strconv"
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
	s := NewStore(reg)
	s.Sent("prod", "group/app", "c1") // before any report: keyed by id
	s.Report("prod", &rpc.SyncStatus{ProjectId: "group/app", ProjectName: "group/app@one", DefaultNamespace: "one", CommitId: "c1", Result: "synced", Health: "Healthy"})
	s.Report("prod", &rpc.SyncStatus{ProjectId: "group/app", ProjectName: "two", DefaultNamespace: "two", CommitId: "c1", Result: "failed", Reason: "x",
		Attempts: 2, NextRetryUnixMs: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli(),
		PendingPrunes: []*rpc.PendingPrune{{Object: "ConfigMap two/held", Finalizers: []string{"example.com/hold"}, DeletingSinceUnixMs: 1000}}})
	s.Sent("prod", "group/app", "c2")
	st := &Agent{Name: "prod"}
	s.Fill("prod", st)
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

// A project is in progress from the moment kas sends a commit (or sends it
// again) until the agent reports a sync of it, and only while the agent
// is connected.
func TestStatusInProgress(t *testing.T) {
	s := NewStore(prometheus.NewRegistry())
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.now = func() time.Time { return now }
	inProgress := func(sessions int) bool {
		t.Helper()
		st := &Agent{Name: "prod", ConnectedSessions: sessions}
		s.Fill("prod", st)
		if len(st.Projects) != 1 {
			t.Fatalf("projects: %+v", st.Projects)
		}
		return st.Projects[0].InProgress
	}
	step := func(what string, f func(), want bool) {
		t.Helper()
		now = now.Add(time.Second)
		f()
		if got := inProgress(1); got != want {
			t.Errorf("after %s: in progress %v, want %v", what, got, want)
		}
	}
	step("c1 sent", func() { s.Sent("prod", "app", "c1") }, true)
	if inProgress(0) {
		t.Error("in progress while the agent is not connected")
	}
	step("c1 synced", func() { s.Report("prod", &rpc.SyncStatus{ProjectId: "app", CommitId: "c1", Result: "synced"}) }, false)
	step("c2 sent", func() { s.Sent("prod", "app", "c2") }, true)
	step("a health report of c1", func() {
		s.Report("prod", &rpc.SyncStatus{ProjectId: "app", CommitId: "c1", Result: "synced", Health: "Healthy"})
	}, true)
	step("c2 failed", func() {
		s.Report("prod", &rpc.SyncStatus{ProjectId: "app", CommitId: "c2", Result: "failed", Attempts: 1, NextRetryUnixMs: now.Add(time.Minute).UnixMilli()})
	}, false)
	step("c2 sent again (agent reconnected)", func() { s.Sent("prod", "app", "c2") }, true)
}

// What a person reads on the page for a project that is retrying, one in
// progress and a stalled one.
func TestStatusPageProjects(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := Report{Replica: "r", GeneratedAt: now, User: "alice", Agents: []PageAgent{{Agent: Agent{Name: "prod", Projects: []Project{
		{ID: "group/retry", SentCommit: "c1", LastSync: &SyncReport{CommitID: "c1", Result: "failed", Reason: "cm-hand exists", Attempts: 2, NextRetryAt: now.Add(30 * time.Second), ReportedAt: now}},
		{ID: "group/busy", SentCommit: "c3", InProgress: true, LastSync: &SyncReport{CommitID: "c2", Result: "synced", ReportedAt: now}},
		{ID: "group/stuck", SentCommit: "c4", LastSync: &SyncReport{CommitID: "c4", Result: "stalled", ReportedAt: now}},
	}}}}}
	var b strings.Builder
	if err := statusTmpl.ExecuteTemplate(&b, "page", map[string]any{"R": rep, "Now": now, "Refresh": statusRefresh}); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(b.String(), " ")), " ")
	for _, want := range []string{
		"health last sync next retry",
		"group/retry c1 c1 failed cm-hand exists 0 / 0 / 0 2026-01-02 03:04:05Z (0s ago) in 30s (attempt 2 failed) 2026-01-02 03:04:35Z",
		"group/busy c3 c2 in progress (last: synced)",
		"group/stuck c4 c4 stalled 0 / 0 / 0 2026-01-02 03:04:05Z (0s ago) none: stalled until the commit, the config or the cluster changes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page lacks %q; it reads:\n%s", want, text)
		}
	}
}

// An agent reporting made-up project names (a stolen token is enough)
// cannot grow kas's memory or its metric series past MaxProjects, and its
// real project keeps being reported.
func TestReportBoundsProjectNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := NewStore(reg)
	if err := s.Report("prod", &rpc.SyncStatus{ProjectId: "group/app", ProjectName: "real", CommitId: "c1", Result: "synced"}); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := range 2 * MaxProjects {
		err := s.Report("prod", &rpc.SyncStatus{ProjectId: "group/app", ProjectName: "fake-" + strconv.Itoa(i), CommitId: "c1", Result: "synced"})
		if err != nil {
			refused++
		}
	}
	if refused != MaxProjects+1 {
		t.Errorf("%d made-up names refused, want %d", refused, MaxProjects+1)
	}
	if n := testutil.CollectAndCount(s.lastSync); n != MaxProjects {
		t.Errorf("kas_gitops_last_sync_timestamp_seconds has %d series, want at most %d", n, MaxProjects)
	}
	if err := s.Report("prod", &rpc.SyncStatus{ProjectId: "group/app", ProjectName: "real", CommitId: "c2", Result: "failed"}); err != nil {
		t.Fatalf("the real project is refused after the flood: %v", err)
	}
	st := &Agent{Name: "prod"}
	s.Fill("prod", st)
	for _, p := range st.Projects {
		if p.Name == "real" && (p.LastSync == nil || p.LastSync.CommitID != "c2") {
			t.Errorf("real project: %+v", p.LastSync)
		}
	}
}
