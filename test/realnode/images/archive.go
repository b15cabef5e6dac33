package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// Image is a single-layer image: its config and the files of its layer.
type Image struct {
	// Ref is the name it is imported under, e.g. kubetunnel/agentk:local.
	// The runtime normalizes it (docker.io/…), as it does a pod's image.
	Ref        string
	Entrypoint []string
	Cmd        []string
	// User is "uid:gid", numeric so that runAsNonRoot can verify it.
	User         string
	WorkingDir   string
	Env          []string
	ExposedPorts []string // "8080/tcp"
	Files        []File
}

// File is one entry of the layer.
type File struct {
	Path     string // absolute path inside the image
	Mode     fs.FileMode
	UID, GID int
	// One of: Data (a regular file), Source (a regular file copied from
	// this machine), Link (a symlink to Link), or none (a directory when
	// Mode has fs.ModeDir).
	Data   []byte
	Source string
	Link   string
}

// epoch is every entry's modification time, so that the same inputs make
// the same layer digest.
var epoch = time.Unix(0, 0).UTC()

// WriteArchive writes the image as a docker-archive tarball (manifest.json
// with RepoTags, the config JSON and one layer tar), the format
// `ctr images import` and `docker load` read.
func (im *Image) WriteArchive(file string) error {
	layer, err := im.layer()
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Ref, err)
	}
	layerSum := sha256.Sum256(layer)
	layerDigest := "sha256:" + hex.EncodeToString(layerSum[:])
	config, err := json.Marshal(im.config(layerDigest))
	if err != nil {
		return fmt.Errorf("image %s: config: %w", im.Ref, err)
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	layerName := hex.EncodeToString(layerSum[:]) + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{im.Ref},
		"Layers":   []string{layerName},
	}})
	if err != nil {
		return fmt.Errorf("image %s: manifest: %w", im.Ref, err)
	}

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, e := range []struct {
		name string
		data []byte
	}{{configName, config}, {layerName, layer}, {"manifest.json", manifest}} {
		if dir := path.Dir(e.name); dir != "." {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch}); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	// Write under a temporary name so that nobody imports half a file.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return os.Rename(tmp, file)
}

func (im *Image) config(layerDigest string) map[string]any {
	ports := map[string]struct{}{}
	for _, p := range im.ExposedPorts {
		ports[p] = struct{}{}
	}
	cfg := map[string]any{"User": im.User, "Env": im.Env, "Entrypoint": im.Entrypoint, "Cmd": im.Cmd, "WorkingDir": im.WorkingDir}
	if len(ports) > 0 {
		cfg["ExposedPorts"] = ports
	}
	return map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	}
}

// layer returns the layer tar: every file, with parent directories made
// implicitly (root-owned, 0755) where the image does not list them.
func (im *Image) layer() ([]byte, error) {
	files := map[string]File{}
	for _, f := range im.Files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("file path %q is not absolute", f.Path)
		}
		files[path.Clean(f.Path)] = f
		for d := path.Dir(path.Clean(f.Path)); d != "/"; d = path.Dir(d) {
			if _, ok := files[d]; !ok {
				files[d] = File{Path: d, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names) // parents before children
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := files[n]
		h := &tar.Header{Name: strings.TrimPrefix(n, "/"), Mode: int64(f.Mode.Perm()), Uid: f.UID, Gid: f.GID, ModTime: epoch}
		if f.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		var data []byte
		switch {
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		case f.Mode.IsDir():
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case f.Source != "":
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Path, err)
			}
			data = b
		default:
			data = f.Data
		}
		if h.Typeflag == 0 {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
