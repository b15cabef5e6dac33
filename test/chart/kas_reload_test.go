package chart_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	volumeutil "k8s.io/kubernetes/pkg/volume/util"

	tu "kubetunnel/internal/testutil"
	"kubetunnel/kas"
)

// The chart's ConfigMap, projected into a directory by kubelet's own
// writer (AtomicWriter: config.yaml is a symlink to ..data/config.yaml,
// and an update swaps the ..data symlink to a new directory), is reloaded
// by a running kas: a new user is let in, a broken update is refused and
// named, with no restart.
func TestKasReloadsConfigMapVolume(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const carolToken = "carol-token"
	carolHash := kas.HashToken(carolToken)
	configOf := func(values string) []byte {
		t.Helper()
		data := str(mustRender(t, "kas", "kas", "default", values).one(t, "ConfigMap"), "data", "config.yaml")
		// Loopback listeners on free ports and a private cache, so that
		// the rendered config runs here.
		data = regexp.MustCompile(`address: :\d+`).ReplaceAllString(data, "address: 127.0.0.1:0")
		data = regexp.MustCompile(`cache_dir: \S+`).ReplaceAllString(data, "cache_dir: "+filepath.Join(t.TempDir(), "cache"))
		return []byte(data)
	}
	users := "config:\n  users:\n  - name: alice\n    token_sha256: [\"" + kas.HashToken("alice-token") + "\"]\n"
	withCarol := users + "  - name: carol\n    token_sha256: [\"" + carolHash + "\"]\n"

	dir := t.TempDir()
	w, err := volumeutil.NewAtomicWriter(dir, "kas config")
	if err != nil {
		t.Fatal(err)
	}
	project := func(data []byte) {
		t.Helper()
		if err := w.Write(map[string]volumeutil.FileProjection{"config.yaml": {Data: data, Mode: 0o644}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	first := configOf(users)
	project(first)
	file := filepath.Join(dir, "config.yaml")
	if target, err := os.Readlink(file); err != nil || target != "..data/config.yaml" {
		t.Fatalf("config.yaml: readlink %q, %v: want kubelet's symlink to ..data/config.yaml", target, err)
	}
	before, _ := os.Readlink(filepath.Join(dir, "..data"))

	cfg, err := kas.ParseConfig(first)
	if err != nil {
		t.Fatalf("kas rejects the rendered config: %v\n%s", err, first)
	}
	logger, logs := tu.NewLogger(t)
	srv, err := kas.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv.ConfigFile = file
	srv.ConfigPollPeriod = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kas Run: %v", err)
		}
	}()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("kas stopped before it was ready: %v", err)
	}
	statusAs := func(token string) int {
		t.Helper()
		code, _ := tu.Do(t, "GET", "http://"+srv.Addr("observability").String()+"/api/v1/status", nil,
			map[string]string{"Authorization": "Bearer " + token})
		return code
	}
	if code := statusAs(carolToken); code != http.StatusUnauthorized {
		t.Fatalf("carol before the update: %d, want 401", code)
	}

	// helm upgrade adds carol: kubelet swaps ..data.
	project(configOf(withCarol))
	if after, _ := os.Readlink(filepath.Join(dir, "..data")); after == before {
		t.Fatalf("..data still points at %s: the update was not a symlink swap", after)
	}
	tu.Eventually(t, 10*time.Second, "carol to be let in", func() bool { return statusAs(carolToken) == http.StatusOK })
	if st := srv.ConfigReloadStatus(); st.Result != "success" {
		t.Errorf("reload state after the swap: %+v", st)
	}

	// A broken update: refused, named, the running config stays.
	project(configOf(strings.Replace(withCarol, carolHash, "not-a-hash", 1)))
	tu.Eventually(t, 10*time.Second, "the broken update to be refused", func() bool { return srv.ConfigReloadStatus().Result == "failure" })
	if st := srv.ConfigReloadStatus(); st.Key != "users[1].token_sha256[0]" {
		t.Errorf("reload state after a broken update: %+v, want the key users[1].token_sha256[0]", st)
	}
	if code := statusAs(carolToken); code != http.StatusOK {
		t.Errorf("carol after a broken update: %d, want the running config to stay", code)
	}
	if !logs.Contains("Config reload failed") {
		t.Errorf("kas did not log the failed reload:\n%s", logs)
	}
}
