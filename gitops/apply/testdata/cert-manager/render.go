//go:build ignore

// render writes cert-manager's Helm chart, rendered as `helm template`
// would with the values below, as one manifest file per template. Run from
// the repository root:
//
//	go run ./gitops/apply/testdata/cert-manager/render.go <cert-manager checkout>/deploy/charts/cert-manager gitops/apply/testdata/cert-manager/manifests
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// values: the CRDs in the install (as the static release manifest has
// them), no post-install check Job.
const values = `
crds:
  enabled: true
startupapicheck:
  enabled: false
`

func main() {
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(chartDir, out string) error {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return err
	}
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		return err
	}
	top, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: "cert-manager", Namespace: "cert-manager", Revision: 1, IsInstall: true,
	}, nil)
	if err != nil {
		return err
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// helm install --create-namespace; the static release manifest has it.
	ns := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cert-manager\n"
	if err := os.WriteFile(filepath.Join(out, "00-namespace.yaml"), []byte(ns), 0o644); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		text := files[name]
		base := filepath.Base(name)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" || strings.TrimSpace(strings.ReplaceAll(text, "---", "")) == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(out, base), []byte("# Source: "+name+"\n"+text), 0o644); err != nil {
			return err
		}
	}
	return nil
}
