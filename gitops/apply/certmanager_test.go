package apply

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// certManager is cert-manager's chart, rendered (testdata/cert-manager/SOURCE.md).
const certManager = "testdata/cert-manager"

// The whole cert-manager install (CRDs of 270 and 328 KB) and custom
// objects of those CRDs in one commit: every object applied is what
// `kubectl apply --server-side` would make of its manifest (`kubectl diff
// --server-side` finds nothing), a resync applies nothing, and a later
// commit with an invalid custom object is stopped by the pre-check, which
// judges it by the CRD's schema.
func TestCertManager(t *testing.T) {
	ctx := context.Background()
	files := append(readManifests(t, filepath.Join(certManager, "manifests")), readManifests(t, filepath.Join(certManager, "custom"))...)
	big := 0
	for _, f := range files {
		if len(f.Data) > 262144 && strings.Contains(f.Path, "/crd-") {
			big++
		}
	}
	if big != 3 {
		t.Fatalf("%d CRDs over 262144 bytes, want 3", big)
	}
	a := newApplier(t, "cm")
	p := testProject("vendor/cert-manager", "cert-manager")
	p.Paths = []string{"/manifests/*.yaml", "/custom/*.yaml"}
	// No webhook pod can run here (no kubelet): with its webhook
	// configurations the API server would send every cert-manager object
	// to a webhook that never answers.
	p.ResourceExclusions = []Filter{{APIGroups: []string{"admissionregistration.k8s.io"}, Kinds: []string{"*WebhookConfiguration"}}}
	start := time.Now()
	res := a.SyncFiles(ctx, p, "c1", files)
	t.Logf("first sync: %+v in %s", res, time.Since(start).Round(time.Millisecond))
	objs := mustParse(t, a, "cert-manager", files...)
	if res.Failed || res.Skipped != 2 || res.Applied != len(objs)-2 {
		t.Fatalf("first sync: %+v, want %d applied, 2 skipped", res, len(objs)-2)
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if !p.manages(gvk.Group, gvk.Kind) {
			continue
		}
		ri, _, err := a.clients.resource(gvk, o.GetNamespace())
		if err != nil {
			t.Fatal(err)
		}
		live, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s: %v", describe(o), err)
			continue
		}
		if live.GetAnnotations()[AnnotationManagedBy] != "cm/vendor/cert-manager/cert-manager" {
			t.Errorf("%s: not marked", describe(o))
		}
	}

	// kubectl's own server-side apply of every manifest (as another field
	// manager, so agentk's annotations stay) would change nothing.
	args := []string{"--kubeconfig", cp.KubeconfigPath, "diff", "--server-side", "--force-conflicts", "--field-manager", "kubectl-verify"}
	for _, f := range files {
		if !strings.Contains(f.Path, "webhook-mutating") && !strings.Contains(f.Path, "webhook-validating") {
			args = append(args, "-f", filepath.Join(certManager, filepath.FromSlash(f.Path)))
		}
	}
	out, err := exec.CommandContext(ctx, "kubectl", args...).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("kubectl diff --server-side: %v\n%.4000s", err, out)
	}

	// The same check sees a difference when there is one.
	changed := filepath.Join(t.TempDir(), "issuers.yaml")
	data, err := os.ReadFile(filepath.Join(certManager, "custom", "issuers.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(changed, []byte(strings.Replace(string(data), "duration: 2160h", "duration: 720h", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(ctx, "kubectl", append(args[:7:7], "-f", changed)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "720h") {
		t.Errorf("kubectl diff of a changed Certificate: %v\n%s", err, out)
	}

	res = mustSync(t, a, p, "c1", objs)
	wantCounts(t, res, 0, 0, len(objs)-2)

	// A Certificate whose duration is a number: the CRD (live now) says
	// string. The pre-check stops the commit; the Issuer change in the
	// same commit is not applied.
	bad := make([]File, len(files))
	copy(bad, files)
	for i, f := range bad {
		if f.Path == "/custom/issuers.yaml" {
			s := strings.Replace(string(f.Data), "duration: 2160h", "duration: 5", 1)
			s = strings.Replace(s, "selfSigned: {}", "selfSigned: {crlDistributionPoints: [http://crl.example.com]}", 1)
			bad[i] = File{Path: f.Path, Data: []byte(s)}
		}
	}
	res = a.SyncFiles(ctx, p, "c2", bad)
	if !res.Failed || res.Failure != FailureStalled || !strings.Contains(res.Reason, "/custom/issuers.yaml: document 3: Certificate.cert-manager.io cert-manager/internal-ca: ") ||
		!strings.Contains(res.Reason, "spec.duration") {
		t.Errorf("invalid Certificate: %+v, want stalled naming /custom/issuers.yaml document 3 and spec.duration", res)
	}
	issuer := &unstructured.Unstructured{}
	issuer.SetAPIVersion("cert-manager.io/v1")
	issuer.SetKind("Issuer")
	ri, _, err := a.clients.resource(issuer.GroupVersionKind(), "cert-manager")
	if err != nil {
		t.Fatal(err)
	}
	live, err := ri.Get(ctx, "selfsigned", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, found, _ := unstructured.NestedSlice(live.Object, "spec", "selfSigned", "crlDistributionPoints"); found {
		t.Error("the Issuer change of the rejected commit was applied")
	}
}
