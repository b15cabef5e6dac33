package images_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/test/realnode/images"
)

// stage is what a Dockerfile's final stage says about the image it makes.
type stage struct {
	name, user, workdir, entrypoint string
	env, expose                     []string
	copies                          []string // destination paths of COPY --from=build
}

// finalStages parses the stages of a Dockerfile that copy from the build
// stage, by name (the last one also under "").
func finalStages(t *testing.T, file string) map[string]*stage {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	stages := map[string]*stage{}
	var cur *stage
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kw, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(kw) {
		case "FROM":
			cur = &stage{}
			if f := strings.Fields(rest); len(f) >= 3 && strings.EqualFold(f[len(f)-2], "AS") {
				cur.name = f[len(f)-1]
			}
			stages[cur.name] = cur
			stages[""] = cur
		case "USER":
			cur.user = rest
		case "WORKDIR":
			cur.workdir = rest
		case "ENTRYPOINT":
			cur.entrypoint = rest
		case "ENV":
			cur.env = append(cur.env, strings.Fields(rest)...)
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				cur.expose = append(cur.expose, p+"/tcp")
			}
		case "COPY":
			if f := strings.Fields(rest); strings.HasPrefix(f[0], "--from=build") {
				cur.copies = append(cur.copies, f[len(f)-1])
			}
		}
	}
	return stages
}

// The locally made agentk and kas images are the Dockerfiles' images:
// same binary path, entrypoint, numeric user, working directory, HOME
// and ports. A change to a Dockerfile's final stage fails here until the
// local image follows it.
func TestImagesMatchDockerfiles(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dockerfile, stage string
		image             *images.Image
	}{
		{"Dockerfile.agentk", "", images.Agentk("agentk")},
		{"Dockerfile.kas", "distroless", images.Kas("kas")},
		// The default kas stage (Alpine with git) runs the same way.
		{"Dockerfile.kas", "", images.Kas("kas")},
	} {
		t.Run(c.dockerfile+"/"+c.stage, func(t *testing.T) {
			st := finalStages(t, filepath.Join(root, c.dockerfile))[c.stage]
			if st == nil {
				t.Fatalf("no stage %q", c.stage)
			}
			entry, _ := json.Marshal(c.image.Entrypoint)
			if st.entrypoint != string(entry) {
				t.Errorf("ENTRYPOINT %s, local image %s", st.entrypoint, entry)
			}
			if st.user != c.image.User {
				t.Errorf("USER %s, local image %s", st.user, c.image.User)
			}
			if st.workdir != c.image.WorkingDir {
				t.Errorf("WORKDIR %q, local image %q", st.workdir, c.image.WorkingDir)
			}
			for _, e := range st.env {
				if !slices.Contains(c.image.Env, e) {
					t.Errorf("ENV %s missing from the local image's %v", e, c.image.Env)
				}
			}
			if !slices.Equal(st.expose, c.image.ExposedPorts) {
				t.Errorf("EXPOSE %v, local image %v", st.expose, c.image.ExposedPorts)
			}
			var paths []string
			for _, f := range c.image.Files {
				paths = append(paths, f.Path)
			}
			for _, dst := range st.copies {
				if !slices.Contains(paths, dst) {
					t.Errorf("the Dockerfile copies the binary to %s; the local image has no such file", dst)
				}
			}
			if len(st.copies) == 0 || c.image.Entrypoint[0] != st.copies[0] {
				t.Errorf("entrypoint %s is not the copied binary %v", c.image.Entrypoint[0], st.copies)
			}
			if c.image.WorkingDir != "" && !slices.ContainsFunc(c.image.Files, func(f images.File) bool {
				return f.Path == c.image.WorkingDir && f.UID == 65532
			}) {
				t.Errorf("working directory %s is not in the image or not owned by the user", c.image.WorkingDir)
			}
		})
	}
}

// An archive holds a manifest naming the image, a config with the
// entrypoint and user, and one layer whose files have their modes, owners
// and contents; its digest is stable.
func TestWriteArchive(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "prog")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	im := images.Agentk(bin)
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	for _, f := range []string{a, b} {
		if err := im.WriteArchive(f); err != nil {
			t.Fatal(err)
		}
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Error("two archives of the same image differ")
	}
	entries := untar(t, da)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(entries["manifest.json"].data, &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || !slices.Equal(manifest[0].RepoTags, []string{images.AgentkRef}) || len(manifest[0].Layers) != 1 {
		t.Fatalf("manifest %+v", manifest)
	}
	var cfg struct {
		Config struct {
			User       string
			Entrypoint []string
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(entries[manifest[0].Config].data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/agentk"}) {
		t.Errorf("config %+v", cfg.Config)
	}
	layerName := manifest[0].Layers[0]
	if want := "sha256:" + strings.TrimSuffix(layerName, "/layer.tar"); len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != want {
		t.Errorf("diff_ids %v, want [%s]", cfg.RootFS.DiffIDs, want)
	}
	layer := untar(t, entries[layerName].data)
	if e := layer["usr/local/bin/agentk"]; e == nil || string(e.data) != "#!binary" || e.hdr.Mode != 0o755 {
		t.Errorf("binary in layer: %+v", e)
	}
	if e := layer["tmp/"]; e == nil || e.hdr.Mode != 0o1777 {
		t.Errorf("/tmp in layer: %+v", e)
	}
	if e := layer["home/nonroot/"]; e == nil || e.hdr.Uid != 65532 {
		t.Errorf("/home/nonroot in layer: %+v", e)
	}
	if e := layer["usr/local/"]; e == nil || e.hdr.Typeflag != tar.TypeDir {
		t.Errorf("parent directory /usr/local not in layer")
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func untar(t *testing.T, data []byte) map[string]*entry {
	t.Helper()
	out := map[string]*entry{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = &entry{h, b}
	}
}
