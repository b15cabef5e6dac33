package gitrepo

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWalk(t *testing.T) {
	src := newSource(t)
	src.commit(map[string]string{
		"README.md":               "hello",
		"manifests/app/dep.yaml":  "kind: Deployment\n",
		"manifests/cm.yaml":       "kind: ConfigMap\n",
		".gitlab/agents/a/c.yaml": "{}",
	})
	// A symbolic link and an executable: git records their modes.
	if err := os.Symlink("cm.yaml", filepath.Join(src.wdir, "manifests", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src.wdir, "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	commit := src.commitWorktree()
	c := newCache(t, Repository{ID: "r", URL: "file://" + src.dir})
	fetch(t, c, "r")

	type entry struct {
		path string
		size int64
	}
	var got []entry
	err := c.Walk("r", commit, func(path string, size int64, open func() ([]byte, error)) error {
		got = append(got, entry{path, size})
		if path == "manifests/cm.yaml" {
			b, err := open()
			if err != nil {
				return err
			}
			if string(b) != "kind: ConfigMap\n" {
				t.Errorf("cm.yaml = %q", b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []entry{
		{".gitlab/agents/a/c.yaml", 2},
		{"README.md", 5},
		{"manifests/app/dep.yaml", 17},
		{"manifests/cm.yaml", 16},
		{"run.sh", 10},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Walk:\n got %v\nwant %v", got, want)
	}

	// The callback's error stops the walk and comes back as it is.
	stop := errors.New("stop")
	n := 0
	err = c.Walk("r", commit, func(string, int64, func() ([]byte, error)) error {
		n++
		return stop
	})
	if err != stop || n != 1 {
		t.Errorf("Walk with a stopping callback: err %v after %d calls", err, n)
	}

	// The callback may use the Cache: no lock is held.
	err = c.Walk("r", commit, func(path string, _ int64, _ func() ([]byte, error)) error {
		_, err := c.ReadFile("r", commit, path)
		return err
	})
	if err != nil {
		t.Errorf("Walk with a callback that reads: %v", err)
	}

	if _, err := c.ReadFile("r", commit, "manifests/link.yaml"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("ReadFile of a symbolic link: %v, want an error that is not ErrNotFound", err)
	}
}
