package build_test

import (
	"bytes"
	"context"
	"debug/elf"
	"kubetunnel/internal/testutil/controlplane"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kubetunnel/test/build"
)

// nonRootUID is the numeric user the images run as (distroless "nonroot").
const nonRootUID = "65532"

// TestDockerfileFlags checks that each Dockerfile builds the way the
// release images need: static, trimmed paths, version from a build arg,
// non-root final stages.
func TestDockerfileFlags(t *testing.T) {
	root := repoRoot(t)
	for _, name := range []string{"kas", "agentk"} {
		t.Run(name, func(t *testing.T) {
			step, err := build.ParseDockerfile(filepath.Join(root, "Dockerfile."+name), "v9.8.7-test")
			if err != nil {
				t.Fatal(err)
			}
			if got := step.Getenv("CGO_ENABLED"); got != "0" {
				t.Errorf("CGO_ENABLED=%q in the build step's environment, want 0", got)
			}
			if _, ok := step.Flag("trimpath"); !ok {
				t.Errorf("go build %v: no -trimpath", step.Args)
			}
			ld, _ := step.Flag("ldflags")
			if !strings.Contains(ld, "-X kubetunnel/version.Version=v9.8.7-test") {
				t.Errorf("-ldflags %q does not set kubetunnel/version.Version from ARG VERSION", ld)
			}
			if pkg := step.Args[len(step.Args)-1]; pkg != "./cmd/"+name {
				t.Errorf("go build builds %q, want ./cmd/%s", pkg, name)
			}
			final := 0
			for _, st := range step.Stages {
				if !st.CopiesFromBuild {
					continue
				}
				final++
				if uid, _, _ := strings.Cut(st.User, ":"); uid != nonRootUID {
					t.Errorf("stage %q (FROM %s): USER %q, want %s (numeric, so runAsNonRoot can verify it)", st.Name, st.From, st.User, nonRootUID)
				}
			}
			if final == 0 {
				t.Errorf("no stage copies the binary from stage %q", step.Stage)
			}
		})
	}
}

// TestStaticBinaries runs each Dockerfile's go build step here and checks
// the binary is statically linked and reports the injected version.
func TestStaticBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kas and agentk as the Dockerfiles do: not in -short")
	}
	root := repoRoot(t)
	dir := t.TempDir()
	const version = "v0.0.0-dockerfile-test"
	for _, name := range []string{"kas", "agentk"} {
		t.Run(name, func(t *testing.T) {
			bin, err := build.Binary(context.Background(), root, dir, name, version)
			if err != nil {
				t.Fatal(err)
			}
			checkStatic(t, bin)
			out, err := exec.Command(bin, "--version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s --version: %v\n%s", name, err, out)
			}
			if got, want := strings.TrimSpace(string(out)), name+" "+version; got != want {
				t.Errorf("%s --version printed %q, want %q", name, got, want)
			}
		})
	}
}

// checkStatic fails unless bin is an ELF file with neither an interpreter
// (PT_INTERP) nor a dynamic section: it runs on distroless/static.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp := make([]byte, p.Filesz)
			p.ReadAt(interp, 0)
			t.Errorf("%s has an ELF interpreter %q: dynamically linked (is CGO_ENABLED=0?)", bin, bytes.TrimRight(interp, "\x00"))
		}
		if p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a PT_DYNAMIC program header: dynamically linked", bin)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Errorf("%s has a .dynamic section: dynamically linked", bin)
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
}

func TestParseDockerfileWords(t *testing.T) {
	step, err := build.ParseDockerfile(filepath.Join(repoRoot(t), "Dockerfile.agentk"), "v1")
	if err != nil {
		t.Fatal(err)
	}
	// GOOS=$TARGETOS is empty outside a cross build and must not reach go.
	if slices.ContainsFunc(step.Env, func(kv string) bool { return strings.HasPrefix(kv, "GOOS=") }) {
		t.Errorf("empty GOOS kept in %v", step.Env)
	}
	if o, _ := step.Flag("o"); o != "/out/agentk" {
		t.Errorf("-o %q, want /out/agentk", o)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
