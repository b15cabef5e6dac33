package kas

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kubetunnel/api/rpc"
	"kubetunnel/internal/testutil/metrics"
)

const setTimeout = 10 * time.Second

var manifestTree = map[string]string{
	"README.md":                       "# deployments\n",
	"d.json":                          `{"kind":"ConfigMap"}`,
	"manifests/a.yaml":                "kind: Deployment\n",
	"manifests/b/c.yml":               "kind: Service\n",
	"manifests/notes.txt":             "not a manifest\n",
	"manifests/.hidden.yaml":          "kind: Hidden\n",
	".gitlab/agents/prod/config.yaml": "gitops: {}\n",
	".github/workflows/ci.yaml":       "on: push\n",
}

func wantSet(t *testing.T, s manifestSet, commit string, files map[string]string) {
	t.Helper()
	if s.commit != commit {
		t.Errorf("set for %s, want %s", s.commit, commit)
	}
	var want []string
	for p := range files {
		want = append(want, p)
	}
	slices.Sort(want)
	if !slices.Equal(s.paths, want) {
		t.Errorf("set paths\n got %q\nwant %q", s.paths, want)
	}
	for p, content := range files {
		if string(s.data[p]) != content {
			t.Errorf("%s = %q, want %q", p, s.data[p], content)
		}
	}
}

// The first call gets the current commit; each commit that moves the
// followed branch gets the whole new set; other branches send nothing.
func TestGitOpsFirstSyncAndChanges(t *testing.T) {
	e, repo := newGitOpsEnv(t, nil)
	first := repo.Commit("first", manifestTree)
	e.start()
	a := e.dialAgent()
	w := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject})
	// The default glob; dot-directories and dot-files left out; sorted.
	wantSet(t, w.next(t, setTimeout), first, map[string]string{
		"/d.json": `{"kind":"ConfigMap"}`, "/manifests/a.yaml": "kind: Deployment\n", "/manifests/b/c.yml": "kind: Service\n",
	})

	second := repo.Commit("second", map[string]string{"manifests/a.yaml": "kind: Deployment\nreplicas: 2\n", "d.json": ""})
	wantSet(t, w.next(t, setTimeout), second, map[string]string{
		"/manifests/a.yaml": "kind: Deployment\nreplicas: 2\n", "/manifests/b/c.yml": "kind: Service\n",
	})

	repo.CommitOnBranch("feature", "elsewhere", map[string]string{"manifests/a.yaml": "kind: Feature\n"})
	w.quiet(t, time.Second, "a commit on another branch")

	if st := e.waitSent(second); len(st.Projects) != 1 {
		t.Errorf("status: %+v, want one project", st)
	}
}

// An agent that resumes with the commit it applied gets nothing until the
// ref moves; refs pick branches, tags and commits.
func TestGitOpsResumeAndRefs(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for several sync rounds: not in -short")
	}
	e, repo := newGitOpsEnv(t, nil)
	first := repo.Commit("first", manifestTree)
	repo.Git("tag", "v1")
	feature := repo.CommitOnBranch("feature", "feature", map[string]string{"manifests/a.yaml": "kind: Feature\n"})
	e.start()
	a := e.dialAgent()

	resumed := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, CommitId: first})
	pinned := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Ref: rpc.EncodeRef("", "", first), Globs: []string{"/manifests/a.yaml"}})
	tagged := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Ref: rpc.EncodeRef("", "v1", ""), Globs: []string{"/manifests/a.yaml"}})
	branch := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Ref: rpc.EncodeRef("feature", "", ""), Globs: []string{"/manifests/a.yaml"}})

	wantSet(t, pinned.next(t, setTimeout), first, map[string]string{"/manifests/a.yaml": "kind: Deployment\n"})
	wantSet(t, tagged.next(t, setTimeout), first, map[string]string{"/manifests/a.yaml": "kind: Deployment\n"})
	wantSet(t, branch.next(t, setTimeout), feature, map[string]string{"/manifests/a.yaml": "kind: Feature\n"})
	resumed.quiet(t, time.Second, "resuming at the current commit")

	second := repo.Commit("second", map[string]string{"manifests/a.yaml": "kind: Deployment\nreplicas: 2\n"})
	wantSet(t, resumed.next(t, setTimeout), second, map[string]string{
		"/d.json": `{"kind":"ConfigMap"}`, "/manifests/a.yaml": "kind: Deployment\nreplicas: 2\n", "/manifests/b/c.yml": "kind: Service\n",
	})
	// A commit outside the globs still moves the branch: the set is sent
	// again, with the new commit id, so the agent reports the right one.
	third := repo.Commit("docs", map[string]string{"README.md": "changed\n"})
	if s := resumed.next(t, setTimeout); s.commit != third || len(s.paths) != 3 {
		t.Errorf("after a README change: set for %s with %q", s.commit, s.paths)
	}
	pinned.quiet(t, 300*time.Millisecond, "commits on main, with a commit ref")
	tagged.quiet(t, 0, "commits on main, with a tag ref")
	branch.quiet(t, 0, "commits on main, with another branch")
}

func TestGitOpsGlobs(t *testing.T) {
	e, repo := newGitOpsEnv(t, nil)
	commit := repo.Commit("first", manifestTree)
	e.start()
	a := e.dialAgent()
	cases := []struct {
		globs []string
		want  []string
	}{
		{[]string{"/manifests/**/*.yaml", "/manifests/**/*.yml"}, []string{"/manifests/a.yaml", "/manifests/b/c.yml"}},
		{[]string{"manifests/*.yaml", "/d.json"}, []string{"/d.json", "/manifests/a.yaml"}},
		{[]string{"/**/*.txt", "/manifests/*.txt"}, []string{"/manifests/notes.txt"}},
		// Dot-directories and dot-files are never sent: an empty set.
		{[]string{"/.gitlab/**", "/.github/**/*.yaml", "/manifests/.hidden.yaml"}, nil},
	}
	for _, c := range cases {
		s := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Globs: c.globs}).next(t, setTimeout)
		if s.commit != commit || !slices.Equal(s.paths, c.want) {
			t.Errorf("globs %q: set for %s with %q, want %q", c.globs, s.commit, s.paths, c.want)
		}
	}
}

func wantCode(t *testing.T, err error, code codes.Code, msg ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("got %v, want %v", err, code)
		return
	}
	for _, m := range msg {
		if !strings.Contains(st.Message(), m) {
			t.Errorf("message %q does not contain %q", st.Message(), m)
		}
	}
}

func TestGitOpsRefusals(t *testing.T) {
	e, repo := newGitOpsEnv(t, nil)
	repo.Commit("first", manifestTree)
	e.startWith(func(s *Server) { s.gitops.RefWait = 300 * time.Millisecond })
	a := e.dialAgent()
	call := func(req *rpc.ObjectsToSynchronizeRequest) error {
		return a.watch(t, req).end(t, setTimeout)
	}
	wantCode(t, call(&rpc.ObjectsToSynchronizeRequest{ProjectId: "group/nope"}), codes.NotFound, `"group/nope"`, "repositories[]")
	wantCode(t, call(&rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Ref: "main"}), codes.InvalidArgument, `ref "main"`)
	wantCode(t, call(&rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Ref: "commit:abc123"}), codes.InvalidArgument, "full commit SHA")
	wantCode(t, call(&rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Globs: []string{"/m/[a-"}}), codes.InvalidArgument, `"/m/[a-"`)
	wantCode(t, call(&rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Globs: make([]string, 101)}), codes.FailedPrecondition, "max_number_of_paths (100)")
	start := time.Now()
	wantCode(t, call(&rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Ref: rpc.EncodeRef("nope", "", "")}), codes.NotFound, `branch "nope"`, "manifest_projects[].ref")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("a missing branch ended the stream after %v, before refWait", d)
	}
}

// A commit over a limit ends the stream with FailedPrecondition naming the
// limit and the file; once fixed, the next call gets the set.
func TestGitOpsLimitError(t *testing.T) {
	e, repo := newGitOpsEnv(t, func(c *Config) {
		c.Agent.GitOps.MaxManifestFileSize = 1000
		c.Agent.GitOps.MaxNumberOfFiles = 3
	})
	repo.Commit("first", map[string]string{"manifests/big.yaml": strings.Repeat("x", 1500), "manifests/ok.yaml": "kind: A\n"})
	e.start()
	a := e.dialAgent()
	err := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject}).end(t, setTimeout)
	want := `manifest file "/manifests/big.yaml" is 1.5 KiB, over max_manifest_file_size (1000 bytes)`
	wantCode(t, err, codes.FailedPrecondition, want)
	var st AgentStatus
	e.getJSON("/api/v1/agents/"+agentName, &st)
	if len(st.Projects) != 1 || !strings.Contains(st.Projects[0].Error, want) {
		t.Errorf("status API does not show the limit error: %+v", st)
	}
	if !e.kasLog.Contains("max_manifest_file_size") {
		t.Error("kas did not log the limit error")
	}

	e.waitFetched(manifestProject, repo.Commit("too many", map[string]string{"manifests/big.yaml": "", "a.yaml": "a: 1\n", "b.yaml": "b: 1\n", "c.yaml": "c: 1\n"}))
	err = a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject}).end(t, setTimeout)
	wantCode(t, err, codes.FailedPrecondition, `4 manifest files match, over max_number_of_files (3) from file "/manifests/ok.yaml" on`)

	fixed := repo.Commit("fixed", map[string]string{"c.yaml": ""})
	e.waitFetched(manifestProject, fixed)
	s := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject}).next(t, setTimeout)
	if s.commit != fixed || len(s.paths) != 3 {
		t.Errorf("after the fix: set for %s with %q", s.commit, s.paths)
	}
	if st := e.waitSent(fixed); st.Projects[0].Error != "" {
		t.Errorf("status after the fix: %+v", st.Projects[0])
	}
}

// The whole kube-prometheus manifest set (95 files, up to 1 MB each)
// arrives byte for byte through a client with gRPC's default 4 MiB
// message limit; the largest file comes in several Objects.
func TestGitOpsKubePrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("syncs a 95-file manifest set: not in -short")
	}
	// shared/ sits beside the repository, as in CI.
	const src = "../../shared/testdata/kube-prometheus/manifests"
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("kube-prometheus test data (../shared beside the repository): %v", err)
	}
	files := map[string]string{}
	var total int
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		files["/kube-prometheus/"+filepath.ToSlash(rel)] = string(b)
		total += len(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 95 {
		t.Fatalf("%d files in the test data, want 95", len(files))
	}
	e, repo := newGitOpsEnv(t, nil)
	tree := map[string]string{}
	for p, c := range files {
		tree[strings.TrimPrefix(p, "/")] = c
	}
	commit := repo.Commit("kube-prometheus", tree)
	e.start()
	a := e.dialAgent()
	start := time.Now()
	s := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Globs: []string{"/kube-prometheus/**/*.yaml"}}).next(t, 30*time.Second)
	t.Logf("kube-prometheus: %d files, %d bytes in %d Object messages, %v (first fetch included)", len(s.paths), total, s.messages, time.Since(start))
	if s.commit != commit || len(s.paths) != len(files) {
		t.Fatalf("set for %s with %d files, want %s with %d", s.commit, len(s.paths), commit, len(files))
	}
	for p, c := range files {
		if !bytes.Equal(s.data[p], []byte(c)) {
			t.Errorf("%s: %d bytes differ from the %d in the repository", p, len(s.data[p]), len(c))
		}
	}
	if s.messages <= len(files) {
		t.Errorf("%d Object messages for %d files: the file over 1 MiB was not split", s.messages, len(files))
	}
}

// Chunking at any size reassembles to the same bytes, and an empty file
// is one Object.
func TestGitOpsChunking(t *testing.T) {
	e, repo := newGitOpsEnv(t, nil)
	big := strings.Repeat("0123456789abcdef", 1000) // 16000 bytes
	// An empty file, which testutil.GitRepo.Commit cannot write.
	if err := os.WriteFile(filepath.Join(repo.Dir, "empty.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	repo.Git("add", "empty.yaml")
	commit := repo.Commit("first", map[string]string{"a.yaml": big, "b.yaml": "kind: B\n", "c.yaml": big[:1000]})
	e.startWith(func(s *Server) { s.gitops.ChunkSize = 1000 })
	a := e.dialAgent()
	s := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject}).next(t, setTimeout)
	wantSet(t, s, commit, map[string]string{"/a.yaml": big, "/b.yaml": "kind: B\n", "/c.yaml": big[:1000], "/empty.yaml": ""})
	if want := 16 + 1 + 1 + 1; s.messages != want {
		t.Errorf("%d Object messages, want %d (16 chunks, then one each)", s.messages, want)
	}
	if _, ok := s.data["/empty.yaml"]; !ok {
		t.Error("the empty file was not sent")
	}
}

func TestReportSyncStatusRefusals(t *testing.T) {
	e, repo := newGitOpsEnv(t, nil)
	repo.Commit("first", manifestTree)
	e.start()
	a := e.dialAgent()
	ctx := context.Background()
	_, err := a.gitops.ReportSyncStatus(ctx, &rpc.SyncStatus{ProjectId: "group/nope", Result: "synced"})
	wantCode(t, err, codes.NotFound, `"group/nope"`)
	_, err = a.gitops.ReportSyncStatus(ctx, &rpc.SyncStatus{ProjectId: manifestProject, Result: "ok"})
	wantCode(t, err, codes.InvalidArgument, `"ok"`, `"synced"`)
	if n := metrics.Gather(t, e.kas.Metrics()).Sum("kas_gitops_sync_status"); n != 0 {
		t.Errorf("refused reports changed kas_gitops_sync_status: %v", n)
	}
}
