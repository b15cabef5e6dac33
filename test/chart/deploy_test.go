package chart_test

import (
	"bytes"
	"context"
	"flag"
	"kubetunnel/internal/testutil/controlplane"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite deploy/agentk.yaml from chart/agentk")

// Where and how deploy/agentk.yaml is rendered.
const (
	deployNamespace = "kubetunnel"
	deployRelease   = "agentk"
	regenerate      = "make deploy-manifest"
)

const deployHeader = `# agentk, plain-manifest install. GENERATED from chart/agentk with
# deploy/agentk.values.yaml (release "agentk", namespace "kubetunnel"):
# do not edit; regenerate with
#   ` + regenerate + `
#
# Install (see docs/install.md):
#   1. Replace wss://kas.example.com/ below with your kas agent address.
#   2. kubectl apply -f agentk.yaml
#   3. kubectl -n kubetunnel create secret generic agentk-token --from-file=token=agent.token
# agentk is bound to cluster-admin; for other RBAC choices use the Helm chart.
---
apiVersion: v1
kind: Namespace
metadata:
  name: kubetunnel
---
`

// deployManifest renders deploy/agentk.yaml as it should be.
func deployManifest(t *testing.T) (path string, want []byte) {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	values, err := os.ReadFile(filepath.Join(root, "deploy", "agentk.values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := renderChartManagedBy("agentk", deployRelease, deployNamespace, string(values), "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "deploy", "agentk.yaml"), []byte(deployHeader + r.YAML)
}

func TestDeployManifestUpToDate(t *testing.T) {
	path, want := deployManifest(t)
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v\nGenerate it with:\n  %s", err, regenerate)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from chart/agentk rendered with deploy/agentk.values.yaml.\nRegenerate it with:\n  %s\n\nwant:\n%s", path, regenerate, want)
	}
}

// TestDeployManifestApplies applies deploy/agentk.yaml with server-side
// dry-run after creating its namespace, as a user's apply would.
func TestDeployManifestApplies(t *testing.T) {
	path, _ := deployManifest(t)
	_, err := cp.Clientset().CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: deployNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	out, err := kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", path)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -f %s: %v\n%s", path, err, out)
	}
	t.Log(out)
}
