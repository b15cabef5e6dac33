// Command images writes the single-node cluster's images as docker-archive
// tarballs (`make images-local`): agentk and kas built as their
// Dockerfiles build them, a busybox image and a pause image. Load one with
// `ctr -n k8s.io images import FILE` (or `docker load -i FILE`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/test/realnode/images"
)

func main() {
	out := flag.String("out", "", "directory for the tarballs (default: <repo root>/bin/images)")
	version := flag.String("version", "v0.1.0-dev", "version stamped into agentk and kas")
	flag.Parse()
	root, err := controlplane.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
	if *out == "" {
		*out = filepath.Join(root, "bin", "images")
	}
	built, err := images.Build(context.Background(), root, *out, *version)
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
	refs := make([]string, 0, len(built.Archives))
	for ref := range built.Archives {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		fmt.Printf("%-28s %s\n", ref, built.Archives[ref])
	}
}
