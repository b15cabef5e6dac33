package chart_test

import (
	"kubetunnel/internal/testutil/controlplane"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
)

// The docs' commands and values files are rendered and applied here, so
// the docs cannot drift from the charts.

// readDoc returns docs/<name> with its shell variables replaced by
// sample values.
func readDoc(t *testing.T, name string) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(
		"$AGENT_SHA", strings.Repeat("a", 64),
		"$ALICE_SHA", strings.Repeat("b", 64),
		"<sha256 of the agent token>", strings.Repeat("c", 64),
		"<sha256 of alice's token>", strings.Repeat("d", 64),
	).Replace(string(b))
}

// between returns the lines after the first line containing start, up to
// the first line equal to end.
func between(t *testing.T, doc, start, end string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, start)
	if !ok {
		t.Fatalf("the doc has no %q", start)
	}
	_, rest, _ = strings.Cut(rest, "\n")
	body, _, ok := strings.Cut(rest, "\n"+end+"\n")
	if !ok {
		t.Fatalf("no %q after %q", end, start)
	}
	return body
}

var setFlag = regexp.MustCompile(`--set(-file)? '?([^ ']+)'?`)

// helmInstallValues turns the --set and --set-file flags of the doc's
// `helm install … ./chart/<chart>` command into values (a file's content
// is a placeholder).
func helmInstallValues(t *testing.T, doc, chart string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "./chart/"+chart+" ")
	if !ok {
		t.Fatalf("the doc has no helm install of ./chart/%s", chart)
	}
	var cmd strings.Builder
	for _, line := range strings.Split(rest, "\n") {
		line, _, _ = strings.Cut(line, " #")
		cmd.WriteString(strings.TrimSuffix(strings.TrimSpace(line), `\`) + " ")
		if !strings.HasSuffix(strings.TrimSpace(line), `\`) {
			break
		}
	}
	vals := map[string]any{}
	for _, m := range setFlag.FindAllStringSubmatch(cmd.String(), -1) {
		var err error
		if m[1] == "-file" {
			key, _, _ := strings.Cut(m[2], "=")
			err = strvals.ParseIntoString(key+"=-----BEGIN CERTIFICATE-----", vals)
		} else {
			err = strvals.ParseInto(m[2], vals)
		}
		if err != nil {
			t.Fatalf("--set%s %s: %v", m[1], m[2], err)
		}
	}
	out, err := yaml.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestDocsKind(t *testing.T) {
	doc := readDoc(t, "kind.md")

	kasNS := namespace(t)
	r := mustRender(t, "kas", "kas", kasNS, between(t, doc, "cat > $K/kas-values.yaml <<EOF", "EOF"))
	dryRunApply(t, r)
	cfg := kasConfig(t, r)
	checkKasDeployment(t, r, cfg)

	agentNS := namespace(t)
	values := helmInstallValues(t, doc, "agentk")
	r = mustRender(t, "agentk", "agentk", agentNS, values)
	dryRunApply(t, r)
	c := container(r.one(t, "Deployment"))
	checkArgs(t, binary(t, "agentk"), c, "token-file", "kas-ca-cert-file")
	// agentk must reach kas by the name the certificate is for.
	if !strings.Contains(strings.Join(args(c), " "), "--kas-address=wss://kas.kas.svc:8150/") ||
		!strings.Contains(doc, "DNS:kas.kas.svc") {
		t.Errorf("kind.md: agentk's kas address and kas's certificate name disagree: %v", args(c))
	}
}

func TestDocsInstall(t *testing.T) {
	doc := readDoc(t, "install.md")

	kasNS := namespace(t)
	r := mustRender(t, "kas", "kas", kasNS, between(t, doc, "An example `kas-values.yaml`:\n\n```yaml", "```"))
	dryRunApply(t, r)
	checkKasDeployment(t, r, kasConfig(t, r))

	agentNS := namespace(t)
	r = mustRender(t, "agentk", "agentk", agentNS, helmInstallValues(t, doc, "agentk"))
	dryRunApply(t, r)
	checkArgs(t, binary(t, "agentk"), container(r.one(t, "Deployment")), "token-file", "kas-ca-cert-file")
}
