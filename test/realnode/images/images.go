// Package images makes the container images of the test node without a
// registry or a Docker engine: agentk and kas built the way their
// Dockerfiles build them, a busybox image for test workloads and a pause
// image for pod sandboxes, each written as a docker-archive tarball that
// `ctr images import` loads. Pods use them with imagePullPolicy: Never.
//
// The agentk and kas images mirror the Dockerfiles' final stages (binary
// path, entrypoint, numeric user, working directory); a test parses the
// Dockerfiles to keep the two in step.
package images

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"kubetunnel/test/build"
)

// Tag is the tag of every locally made image.
const Tag = "local"

// Image references, as pods and the chart name them.
const (
	AgentkRepository = "kubetunnel/agentk"
	KasRepository    = "kubetunnel/kas"
	AgentkRef        = AgentkRepository + ":" + Tag
	KasRef           = KasRepository + ":" + Tag
	BusyboxRef       = "kubetunnel/busybox:" + Tag
	PauseRef         = "kubetunnel/pause:" + Tag
)

// NonRoot is the user of the agentk and kas images: distroless's nonroot.
const NonRoot = "65532:65532"

// ErrNoBusybox: the busybox image needs a static busybox binary.
var ErrNoBusybox = errors.New("no statically linked busybox on PATH: install it (apt-get install -y busybox-static)")

// Built is the result of Build: the archive of each image.
type Built struct {
	Dir string
	// Archives maps each image reference to its tarball.
	Archives map[string]string
	// Kas and Agentk are the static binaries inside the images, for tests
	// that run kas as a process next to the node.
	Kas, Agentk string
}

// Build compiles agentk and kas as their Dockerfiles do (static, trimmed,
// version stamped) and the pause program, then writes all four image
// archives into dir. root is the repository root.
func Build(ctx context.Context, root, dir, version string) (*Built, error) {
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	b := &Built{Dir: dir, Archives: map[string]string{}}
	var err error
	if b.Agentk, err = build.Binary(ctx, root, binDir, "agentk", version); err != nil {
		return nil, err
	}
	if b.Kas, err = build.Binary(ctx, root, binDir, "kas", version); err != nil {
		return nil, err
	}
	pause := filepath.Join(binDir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", pause, "./realnode/pause")
	cmd.Dir = filepath.Join(root, "test") // the tests' module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the pause program: %w\n%s", err, out)
	}
	busybox, err := staticBusybox()
	if err != nil {
		return nil, err
	}
	applets, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	for _, im := range []*Image{
		Agentk(b.Agentk), Kas(b.Kas), Pause(pause), Busybox(busybox, strings.Fields(string(applets))),
	} {
		file := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(im.Ref)+".tar")
		if err := im.WriteArchive(file); err != nil {
			return nil, err
		}
		b.Archives[im.Ref] = file
	}
	return b, nil
}

// distroless gives the files of gcr.io/distroless/static's nonroot flavour
// that our binaries use: users, a writable /tmp, nonroot's home and the CA
// bundle (agentk verifies kas's certificate against the system roots).
func distroless() []File {
	files := []File{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
	}
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		files = append(files, File{Path: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Source: "/etc/ssl/certs/ca-certificates.crt"})
	}
	return files
}

// Agentk is Dockerfile.agentk's image: the binary at /usr/local/bin/agentk
// as entrypoint, user 65532, observability port 8080.
func Agentk(binary string) *Image {
	return &Image{
		Ref:          AgentkRef,
		Entrypoint:   []string{"/usr/local/bin/agentk"},
		User:         NonRoot,
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		ExposedPorts: []string{"8080/tcp"},
		Files:        append(distroless(), File{Path: "/usr/local/bin/agentk", Mode: 0o755, Source: binary}),
	}
}

// Kas is Dockerfile.kas's distroless stage: /usr/local/bin/kas, user
// 65532, HOME and the working directory /home/nonroot. (The Dockerfile's
// default stage adds git for file:// repositories; tests run kas as a
// process, not from this image.)
func Kas(binary string) *Image {
	return &Image{
		Ref:          KasRef,
		Entrypoint:   []string{"/usr/local/bin/kas"},
		User:         NonRoot,
		WorkingDir:   "/home/nonroot",
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/home/nonroot"},
		ExposedPorts: []string{"8150/tcp", "8151/tcp", "8154/tcp"},
		Files:        append(distroless(), File{Path: "/usr/local/bin/kas", Mode: 0o755, Source: binary}),
	}
}

// Pause is the sandbox image: the pause program as nobody.
func Pause(binary string) *Image {
	return &Image{
		Ref:        PauseRef,
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
		Files:      []File{{Path: "/pause", Mode: 0o755, Source: binary}},
	}
}

// Busybox is a shell and the usual tools (sh, httpd, tar for kubectl cp,
// sleep, cat, wget) for test workloads, running as root like the official
// busybox image.
func Busybox(binary string, applets []string) *Image {
	files := append(distroless(), File{Path: "/bin/busybox", Mode: 0o755, Source: binary})
	for _, a := range applets {
		if a != "busybox" && !strings.Contains(a, "/") {
			files = append(files, File{Path: "/bin/" + a, Link: "busybox"})
		}
	}
	files = append(files, File{Path: "/www/index.html", Mode: 0o644, Data: []byte("hello from busybox httpd\n")})
	return &Image{
		Ref:   BusyboxRef,
		Cmd:   []string{"sh"},
		User:  "0:0",
		Env:   []string{"PATH=/bin"},
		Files: files,
	}
}

// staticBusybox finds busybox on PATH and checks that it needs no shared
// libraries, since the image has none.
func staticBusybox() (string, error) {
	p, err := exec.LookPath("busybox")
	if err != nil {
		return "", ErrNoBusybox
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked: %w", p, ErrNoBusybox)
		}
	}
	return p, nil
}
