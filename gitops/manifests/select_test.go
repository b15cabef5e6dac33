package manifests

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"kubetunnel/gitops/gitrepo"
	"kubetunnel/internal/testutil"
)

// project is a real git repository read through a gitrepo.Cache, as kas
// reads manifest projects.
type project struct {
	t     *testing.T
	repo  *testutil.GitRepo
	cache *gitrepo.Cache
}

func newProject(t *testing.T) *project {
	t.Helper()
	repo := testutil.NewGitRepo(t)
	logger, _ := testutil.NewLogger(t)
	cache, err := gitrepo.New(t.TempDir(), []gitrepo.Repository{{ID: "p", URL: repo.URL()}}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	return &project{t: t, repo: repo, cache: cache}
}

// commit commits files and returns the commit once the cache has it.
func (p *project) commit(files map[string]string) string {
	p.t.Helper()
	commit := p.repo.Commit("change", files)
	if _, err := p.cache.Fetch(context.Background(), "p"); err != nil {
		p.t.Fatal(err)
	}
	return commit
}

func (p *project) selectFiles(commit string, globs []string, lim Limits) ([]File, error) {
	p.t.Helper()
	m, err := NewMatcher(globs, lim.MaxPaths)
	if err != nil {
		return nil, err
	}
	return Select(p.cache, "p", commit, m, lim)
}

func paths(files []File) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.Path)
	}
	return out
}

var tree = map[string]string{
	"README.md":                       "# deployments\n",
	"a.yaml":                          "kind: A\n",
	"a/b.yml":                         "kind: B\n",
	"a0.json":                         `{"kind":"C"}`,
	"manifests/app/deploy.yaml":       "kind: Deployment\n",
	"manifests/app/notes.txt":         "not a manifest\n",
	"manifests/cm.yaml":               "kind: ConfigMap\n",
	"manifests/crds/crd.yaml":         "kind: CustomResourceDefinition\n",
	".gitlab/agents/prod/config.yaml": "gitops: {}\n",
	".github/workflows/ci.yml":        "on: push\n",
	"manifests/.hidden.yaml":          "kind: Hidden\n",
	"manifests/.tmp/x.yaml":           "kind: Hidden\n",
}

func TestSelectGlobs(t *testing.T) {
	p := newProject(t)
	commit := p.commit(tree)
	cases := []struct {
		name  string
		globs []string
		want  []string
	}{
		{"default glob", nil, []string{"/a.yaml", "/a/b.yml", "/a0.json", "/manifests/app/deploy.yaml", "/manifests/cm.yaml", "/manifests/crds/crd.yaml"}},
		{"explicit default", []string{DefaultGlob}, []string{"/a.yaml", "/a/b.yml", "/a0.json", "/manifests/app/deploy.yaml", "/manifests/cm.yaml", "/manifests/crds/crd.yaml"}},
		{"one directory, recursive", []string{"/manifests/**/*.yaml"}, []string{"/manifests/app/deploy.yaml", "/manifests/cm.yaml", "/manifests/crds/crd.yaml"}},
		{"one directory, flat", []string{"/manifests/*.yaml"}, []string{"/manifests/cm.yaml"}},
		{"without the leading slash", []string{"manifests/*.yaml"}, []string{"/manifests/cm.yaml"}},
		{"overlapping globs select a file once", []string{"/manifests/**/*.yaml", "/manifests/crds/*.yaml", "/a.yaml"}, []string{"/a.yaml", "/manifests/app/deploy.yaml", "/manifests/cm.yaml", "/manifests/crds/crd.yaml"}},
		{"any file", []string{"/**"}, []string{"/README.md", "/a.yaml", "/a/b.yml", "/a0.json", "/manifests/app/deploy.yaml", "/manifests/app/notes.txt", "/manifests/cm.yaml", "/manifests/crds/crd.yaml"}},
		{"dot-directories stay hidden even when named", []string{"/.gitlab/**/*.yaml", "/.github/**", "/manifests/.tmp/*.yaml"}, nil},
		{"dot-files stay hidden even when named", []string{"/manifests/.hidden.yaml", "/manifests/.*"}, nil},
		{"no match", []string{"/nothing/**"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files, err := p.selectFiles(commit, c.globs, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got := paths(files); !slices.Equal(got, c.want) {
				t.Errorf("selected\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestSelectReadsContentLazily(t *testing.T) {
	p := newProject(t)
	first := p.commit(tree)
	files, err := p.selectFiles(first, []string{"/manifests/cm.yaml"}, Limits{})
	if err != nil || len(files) != 1 {
		t.Fatalf("Select: %v, %d files", err, len(files))
	}
	// A later commit does not change what a selected file of an earlier
	// one reads.
	p.commit(map[string]string{"manifests/cm.yaml": "kind: ConfigMap\nchanged: true\n"})
	for range 2 {
		data, err := files[0].Read()
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != tree["manifests/cm.yaml"] || files[0].Size != int64(len(data)) {
			t.Errorf("Read = %q (Size %d)", data, files[0].Size)
		}
	}
}

func TestSelectLimits(t *testing.T) {
	p := newProject(t)
	big := strings.Repeat("x", 6_500_000) // 6.2 MiB
	commit := p.commit(map[string]string{
		"big.yaml":     big,
		"m/a.yaml":     strings.Repeat("a", 3000),
		"m/b.yaml":     strings.Repeat("b", 3000),
		"m/c.yaml":     strings.Repeat("c", 3000),
		"m/exact.yaml": strings.Repeat("e", 1024),
	})
	manyGlobs := make([]string, 101)
	for i := range manyGlobs {
		manyGlobs[i] = "/m/*.yaml"
	}
	cases := []struct {
		name  string
		globs []string
		lim   Limits
		want  LimitError
		msg   string
	}{
		{
			"file size, default limit", nil, Limits{},
			LimitError{Limit: LimitFileSize, Path: "/big.yaml", Value: 6_500_000, Max: 5 << 20},
			`manifest file "/big.yaml" is 6.2 MiB, over max_manifest_file_size (5 MiB)`,
		},
		{
			"file size just over", []string{"/m/*.yaml"}, Limits{MaxFileSize: 2999},
			LimitError{Limit: LimitFileSize, Path: "/m/a.yaml", Value: 3000, Max: 2999},
			`manifest file "/m/a.yaml" is 3000 bytes, over max_manifest_file_size (2999 bytes)`,
		},
		{
			"total size", []string{"/m/*.yaml"}, Limits{MaxTotalSize: 5000},
			LimitError{Limit: LimitTotalSize, Path: "/m/b.yaml", Value: 10024, Max: 5000},
			`the selected manifest files total 9.8 KiB, over max_total_manifest_file_size (4.9 KiB) from file "/m/b.yaml" on`,
		},
		{
			"number of files", []string{"/m/*.yaml"}, Limits{MaxFiles: 2},
			LimitError{Limit: LimitFiles, Path: "/m/c.yaml", Value: 4, Max: 2},
			`4 manifest files match, over max_number_of_files (2) from file "/m/c.yaml" on`,
		},
		{
			"number of globs, default limit", manyGlobs, Limits{},
			LimitError{Limit: LimitPaths, Value: 101, Max: 100},
			`101 paths[].glob, over max_number_of_paths (100)`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files, err := p.selectFiles(commit, c.globs, c.lim)
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("Select: %d files, err %v; want ErrLimit", len(files), err)
			}
			var le *LimitError
			if !errors.As(err, &le) || *le != c.want {
				t.Errorf("error %#v, want %#v", le, c.want)
			}
			if err.Error() != c.msg {
				t.Errorf("message\n got %s\nwant %s", err, c.msg)
			}
		})
	}

	// At the limits exactly, everything goes through.
	files, err := p.selectFiles(commit, []string{"/m/*.yaml"}, Limits{MaxFileSize: 3000, MaxTotalSize: 10024, MaxFiles: 4, MaxPaths: 1})
	if err != nil || len(files) != 4 {
		t.Errorf("at the limits: %v, %d files", err, len(files))
	}
}

func TestNewMatcherRefusesBadGlobs(t *testing.T) {
	for _, g := range []string{"/manifests/[a-", "/{a,b", "/", "", `/a\`, "/" + strings.Repeat("a", maxGlobLength), strings.Repeat("{a,b}", 7), "/{a,{b,{c,d}}}{" + strings.Repeat("x,", 16) + "y}"} {
		if _, err := NewMatcher([]string{"/ok/*.yaml", g}, 0); !errors.Is(err, ErrInvalidGlob) {
			t.Errorf("NewMatcher(%.50q): %v, want ErrInvalidGlob", g, err)
		}
	}
}

func TestExpansions(t *testing.T) {
	for g, want := range map[string]int{
		"/a/b": 1, DefaultGlob: 3, "/{a,b}/{c,d,e}": 6, "/{a,{b,c}}": 3, `/\{a,b}`: 1,
		"/{a,b": 1, strings.Repeat("{a,b}", 10): maxExpansions + 1,
	} {
		if got := expansions(g); got != want {
			t.Errorf("expansions(%q) = %d, want %d", g, got, want)
		}
	}
}

func TestSelectUnknownCommit(t *testing.T) {
	p := newProject(t)
	p.commit(tree)
	m, _ := NewMatcher(nil, 0)
	if _, err := Select(p.cache, "p", strings.Repeat("0", 40), m, Limits{}); err == nil {
		t.Error("Select of a missing commit succeeded")
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 bytes", 512: "512 bytes", 1024: "1 KiB", 1536: "1.5 KiB",
		5 << 20: "5 MiB", 6_500_000: "6.2 MiB", 3 << 30: "3 GiB",
	} {
		if got := formatSize(n, false); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestUnmatched(t *testing.T) {
	m, err := NewMatcher([]string{"/manifests/**/*.yaml", "manifest/crds/*.yaml", "/.hidden/*.yaml"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Unmatched([]string{"/manifests/app/a.yaml", "/manifests/crds/c.yaml", "/.hidden/x.yaml"})
	want := []string{"/manifest/crds/*.yaml", "/.hidden/*.yaml"}
	if !slices.Equal(got, want) {
		t.Errorf("Unmatched = %q, want %q", got, want)
	}
	if got := m.Unmatched(nil); len(got) != 3 {
		t.Errorf("Unmatched(nil) = %q, want all three globs", got)
	}
}
