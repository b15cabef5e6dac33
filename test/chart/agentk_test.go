package chart_test

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const minimalAgentk = `
kasAddress: wss://kas.example.com/
token:
  value: secret-agent-token
`

func TestAgentkDefaults(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "agentk", "agentk", ns, minimalAgentk)
	dryRunApply(t, r)

	sa := r.one(t, "ServiceAccount")
	secret := r.one(t, "Secret")
	if got := str(secret, "data", "token"); got != "c2VjcmV0LWFnZW50LXRva2Vu" {
		t.Errorf("Secret data.token = %q, want base64 of the token value", got)
	}
	crb := r.one(t, "ClusterRoleBinding")
	if str(crb, "roleRef", "name") != "cluster-admin" || str(crb, "subjects", 0, "name") != sa.name() || str(crb, "subjects", 0, "namespace") != ns {
		t.Errorf("default RBAC: want the service account bound to cluster-admin, got\n%v", crb)
	}
	if n := len(r.find("Role")) + len(r.find("ClusterRole")); n != 0 {
		t.Errorf("%d Roles/ClusterRoles by default, want none", n)
	}

	d := r.one(t, "Deployment")
	spec := get(d, "spec", "template", "spec")
	if str(spec, "serviceAccountName") != sa.name() {
		t.Errorf("serviceAccountName %q, want %q", str(spec, "serviceAccountName"), sa.name())
	}
	c := container(d)
	a := args(c)
	for _, want := range []string{"--kas-address=wss://kas.example.com/", "--token-file=/etc/agentk/token/token", "--observability-listen=:8080"} {
		if !slices.Contains(a, want) {
			t.Errorf("args %q lack %q", a, want)
		}
	}
	if str(c, "image") != "kubetunnel/agentk:v0.1.0" {
		t.Errorf("image %q, want the chart's appVersion as tag", str(c, "image"))
	}
	// Security: non-root, read-only root filesystem, no capabilities, /tmp writable.
	if get(spec, "securityContext", "runAsNonRoot") != true || fmt.Sprint(get(spec, "securityContext", "runAsUser")) != "65532" {
		t.Errorf("pod securityContext %v: want runAsNonRoot and runAsUser 65532", get(spec, "securityContext"))
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false ||
		fmt.Sprint(get(c, "securityContext", "capabilities", "drop")) != "[ALL]" {
		t.Errorf("container securityContext %v: want read-only root fs, no privilege escalation, drop ALL", get(c, "securityContext"))
	}
	if !mountsCover(c, "/tmp/x") {
		t.Error("no volume mounted at /tmp: GitOps needs it with a read-only root filesystem")
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if str(c, probe, "httpGet", "path") != path || str(c, probe, "httpGet", "port") != "observability" {
			t.Errorf("%s %v: want GET %s on the observability port", probe, get(c, probe), path)
		}
	}
	if fmt.Sprint(get(c, "ports", 0, "containerPort")) != "8080" {
		t.Errorf("ports %v: want the observability port 8080", get(c, "ports"))
	}
	if r.Notes == "" {
		t.Error("NOTES.txt rendered empty")
	}
}

func TestAgentkNamespaceScopedRBAC(t *testing.T) {
	ns := namespace(t)
	app1, app2, other := namespace(t), namespace(t), namespace(t)
	values := minimalAgentk + fmt.Sprintf(`
rbac:
  mode: namespaces
  namespaces: [%s, %s]
userAccess:
  impersonate: true
`, app1, app2)
	r := mustRender(t, "agentk", "agentk", ns, values)
	dryRunApply(t, r)

	for _, crb := range r.find("ClusterRoleBinding") {
		if str(crb, "roleRef", "name") == "cluster-admin" {
			t.Errorf("namespace-scoped RBAC still binds cluster-admin: %v", crb)
		}
	}
	var roleNS, bindingNS []string
	for _, role := range r.find("Role") {
		roleNS = append(roleNS, role.namespace())
	}
	for _, rb := range r.find("RoleBinding") {
		bindingNS = append(bindingNS, rb.namespace())
	}
	want := []string{app1, app2}
	slices.Sort(want)
	slices.Sort(roleNS)
	slices.Sort(bindingNS)
	if !slices.Equal(roleNS, want) || !slices.Equal(bindingNS, want) {
		t.Errorf("Roles in %v, RoleBindings in %v, want one of each in %v", roleNS, bindingNS, want)
	}

	// Apply for real and ask the API server what agentk may do.
	if out, err := kubectl(t, "apply", "-f", r.writeTemp(t)); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	sa := fmt.Sprintf("system:serviceaccount:%s:%s", ns, r.one(t, "ServiceAccount").name())
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "deployments.apps", "-n", app1}, "yes"},
		{[]string{"delete", "secrets", "-n", app2}, "yes"},
		{[]string{"create", "widgets.example.com", "-n", app2}, "yes"},
		{[]string{"create", "deployments.apps", "-n", other}, "no"},
		{[]string{"list", "secrets", "--all-namespaces"}, "no"},
		{[]string{"create", "namespaces"}, "no"},
		{[]string{"impersonate", "users"}, "yes"},
		{[]string{"impersonate", "groups"}, "yes"},
		{[]string{"impersonate", "serviceaccounts", "-n", other}, "no"},
	} {
		out, _ := kubectl(t, append([]string{"auth", "can-i", "--as", sa}, c.args...)...)
		// The answer is the last line; warnings about the resource come first.
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if got := lines[len(lines)-1]; got != c.want {
			t.Errorf("kubectl auth can-i %s as agentk: %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
}

func TestAgentkExistingSecretAndOptions(t *testing.T) {
	ns := namespace(t)
	values := `
kasAddress: grpcs://kas.example.com:8150
token:
  existingSecret: my-agent-token
  key: agent-token
kasCACert:
  existingConfigMap: kas-ca
  key: root.pem
kasTLSServerName: kas.internal
kasHeaders: ["X-Team: platform", "X-Env: prod"]
proxy:
  httpsProxy: http://proxy.example.com:3128
  noProxy: 10.0.0.0/8,.svc,kubernetes.default
replicas: 3
`
	r := mustRender(t, "agentk", "prod", ns, values)
	dryRunApply(t, r)
	if s := r.find("Secret"); len(s) != 0 {
		t.Errorf("a Secret was rendered although token.existingSecret is set: %v", s)
	}
	if cm := r.find("ConfigMap"); len(cm) != 0 {
		t.Errorf("a ConfigMap was rendered although kasCACert.existingConfigMap is set: %v", cm)
	}
	d := r.one(t, "Deployment")
	if d.name() != "prod-agentk" {
		t.Errorf("Deployment name %q, want prod-agentk", d.name())
	}
	if fmt.Sprint(get(d, "spec", "replicas")) != "3" {
		t.Errorf("replicas %v, want 3", get(d, "spec", "replicas"))
	}
	vols := fmt.Sprint(get(d, "spec", "template", "spec", "volumes"))
	for _, want := range []string{"secretName:my-agent-token", "key:agent-token", "name:kas-ca", "key:root.pem"} {
		if !strings.Contains(vols, want) {
			t.Errorf("volumes %s lack %s", vols, want)
		}
	}
	c := container(d)
	a := args(c)
	for _, want := range []string{"--kas-ca-cert-file=/etc/agentk/kas-ca/ca.crt", "--kas-tls-server-name=kas.internal", "--kas-header=X-Team: platform", "--kas-header=X-Env: prod"} {
		if !slices.Contains(a, want) {
			t.Errorf("args %q lack %q", a, want)
		}
	}
	env := map[string]string{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = str(e, "value")
	}
	if env["HTTPS_PROXY"] != "http://proxy.example.com:3128" || env["NO_PROXY"] != "10.0.0.0/8,.svc,kubernetes.default" {
		t.Errorf("env %v: want HTTPS_PROXY and NO_PROXY from proxy.*", env)
	}
	if _, ok := env["HTTP_PROXY"]; ok {
		t.Errorf("env %v: HTTP_PROXY set although proxy.httpProxy is empty", env)
	}
}

func TestAgentkCAFromPEMAndSecret(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "agentk", "agentk", ns, minimalAgentk+`
kasCACert:
  pem: |
    -----BEGIN CERTIFICATE-----
    MIIB
    -----END CERTIFICATE-----
`)
	dryRunApply(t, r)
	cm := r.one(t, "ConfigMap")
	if !strings.HasPrefix(str(cm, "data", "ca.crt"), "-----BEGIN CERTIFICATE-----\nMIIB\n") {
		t.Errorf("CA ConfigMap data %v", get(cm, "data"))
	}
	if v := str(container(r.one(t, "Deployment")), "volumeMounts", 1, "mountPath"); v != "/etc/agentk/kas-ca" {
		t.Errorf("CA mounted at %q", v)
	}

	r = mustRender(t, "agentk", "agentk", ns, minimalAgentk+`
kasCACert:
  existingSecret: kas-ca
`)
	dryRunApply(t, r)
	if s := str(r.one(t, "Deployment"), "spec", "template", "spec", "volumes", 1, "secret", "secretName"); s != "kas-ca" {
		t.Errorf("CA volume from secret %q, want kas-ca", s)
	}
}

// serviceMonitorCRD is enough of the Prometheus Operator's CRD for the API
// server to accept ServiceMonitor objects.
const serviceMonitorCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// ensureServiceMonitorCRD installs the minimal CRD once and waits for it.
func ensureServiceMonitorCRD(t *testing.T) {
	t.Helper()
	r := &rendered{YAML: serviceMonitorCRD}
	if out, err := kubectl(t, "apply", "-f", r.writeTemp(t)); err != nil {
		t.Fatalf("create ServiceMonitor CRD: %v\n%s", err, out)
	}
	if out, err := kubectl(t, "wait", "--for=condition=Established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com"); err != nil {
		t.Fatalf("ServiceMonitor CRD not established: %v\n%s", err, out)
	}
}

func TestAgentkServiceMonitor(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "agentk", "agentk", ns, minimalAgentk+`
serviceMonitor:
  enabled: true
  interval: 15s
  labels: {release: prometheus}
`)
	sm := r.one(t, "ServiceMonitor")
	if str(sm, "apiVersion") != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %q", str(sm, "apiVersion"))
	}
	if str(sm, "metadata", "labels", "release") != "prometheus" {
		t.Errorf("serviceMonitor.labels not applied: %v", get(sm, "metadata", "labels"))
	}
	svc := r.one(t, "Service")
	selector, _ := get(sm, "spec", "selector", "matchLabels").(map[string]any)
	labels, _ := get(svc, "metadata", "labels").(map[string]any)
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%v; the Service has %v", k, v, labels[k])
		}
	}
	if str(sm, "spec", "endpoints", 0, "port") != str(svc, "spec", "ports", 0, "name") || str(sm, "spec", "endpoints", 0, "interval") != "15s" {
		t.Errorf("ServiceMonitor endpoints %v do not scrape the Service port %v", get(sm, "spec", "endpoints"), get(svc, "spec", "ports"))
	}
	// The Service must reach the pods.
	podLabels, _ := get(r.one(t, "Deployment"), "spec", "template", "metadata", "labels").(map[string]any)
	svcSelector, _ := get(svc, "spec", "selector").(map[string]any)
	for k, v := range svcSelector {
		if podLabels[k] != v {
			t.Errorf("Service selects %s=%v; pods have %v", k, v, podLabels[k])
		}
	}
	ensureServiceMonitorCRD(t)
	dryRunApply(t, r)
}

func TestAgentkInvalidValues(t *testing.T) {
	for _, c := range []struct {
		name, values, want string
	}{
		{"no kasAddress", "token: {value: x}", "kasAddress is required"},
		{"no token", "kasAddress: wss://kas/", "agentk needs a token"},
		{"bad rbac mode", minimalAgentk + "rbac: {mode: admin}", `rbac.mode "admin"`},
		{"namespaces without list", minimalAgentk + "rbac: {mode: namespaces}", "needs rbac.namespaces"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := renderChart("agentk", "agentk", "default", c.values)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("render error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// helpFlag matches a flag line of --help: Go's flag.PrintDefaults
// ("  -name type") or pflag's ("      --name type", "  -n, --name type").
var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?-{1,2}([a-zA-Z0-9][a-zA-Z0-9-]*)`)

// acceptedFlags runs `bin --help` and returns the flag names it lists.
func acceptedFlags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, out)
	}
	flags := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 3 {
		t.Fatalf("found only flags %v in %s --help:\n%s", flags, bin, out)
	}
	return flags
}

// checkArgs checks that every argument is a flag bin accepts, that bin
// parses the whole list (`bin ARGS --version` exits 0 after parsing them)
// and that files named by fileFlags lie on a volume mount.
func checkArgs(t *testing.T, bin string, c map[string]any, fileFlags ...string) {
	t.Helper()
	accepted := acceptedFlags(t, bin)
	a := args(c)
	for _, arg := range a {
		if !strings.HasPrefix(arg, "--") {
			t.Errorf("argument %q is not a --flag", arg)
			continue
		}
		name, value, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		if !accepted[name] {
			t.Errorf("argument %q: %s has no flag --%s (its flags: %v)", arg, bin, name, keys(accepted))
		}
		if slices.Contains(fileFlags, name) && !mountsCover(c, value) {
			t.Errorf("argument %q names a file on no volume mount (%v)", arg, get(c, "volumeMounts"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(a, "--version")...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %s --version: %v\n%s", bin, strings.Join(a, " "), err, out)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestAgentkArgsAreFlags renders the chart with every option that adds an
// argument and checks the arguments against the real agentk binary.
func TestAgentkArgsAreFlags(t *testing.T) {
	bin := binary(t, "agentk")
	for name, values := range map[string]string{
		"defaults": minimalAgentk,
		"everything": `
kasAddress: wss://kas.example.com/
token: {existingSecret: t}
kasCACert: {existingSecret: ca}
kasTLSServerName: kas.internal
kasHeaders: ["X-A: b"]
kasInsecureSkipTLSVerify: true
logLevel: debug
extraArgs: ["--kubeconfig=/etc/kubeconfig"]
`,
		"gitlab-agent chart values": gitlabAgentValues,
	} {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, "agentk", "agentk", "default", values)
			checkArgs(t, bin, container(r.one(t, "Deployment")), "token-file", "kas-ca-cert-file")
		})
	}
}

// gitlabAgentValues is a values file written for the official gitlab-agent
// chart (helm install gitlab/gitlab-agent --set config.kasAddress=…
// --set config.token=…), with its other common keys.
const gitlabAgentValues = `
image:
  tag: v16.11.0
replicas: 2
config:
  kasAddress: wss://kas.gitlab.example.com
  token: glagent-0123456789abcdef
  kasCaCert: |
    -----BEGIN CERTIFICATE-----
    MIIC
    -----END CERTIFICATE-----
  kasHeaders: ["Cookie: gitlab-canary"]
  observability:
    enabled: true
rbac:
  create: true
serviceAccount:
  create: true
extraEnv:
- name: GOMEMLIMIT
  value: 400MiB
`

// The official gitlab-agent chart's values install this agentk: the
// address, the token (inline or an existing Secret), kas's CA and headers
// go where ours would, and the API server admits the result.
func TestAgentkGitLabChartValues(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "agentk", "gitlab-agent", ns, gitlabAgentValues)
	dryRunApply(t, r)
	if got := str(r.one(t, "Secret"), "data", "token"); got != "Z2xhZ2VudC0wMTIzNDU2Nzg5YWJjZGVm" {
		t.Errorf("Secret data.token = %q, want config.token base64", got)
	}
	if !strings.HasPrefix(str(r.one(t, "ConfigMap"), "data", "ca.crt"), "-----BEGIN CERTIFICATE-----\nMIIC\n") {
		t.Errorf("CA ConfigMap %v, want config.kasCaCert", r.one(t, "ConfigMap"))
	}
	d := r.one(t, "Deployment")
	c := container(d)
	a := args(c)
	for _, want := range []string{"--kas-address=wss://kas.gitlab.example.com", "--token-file=/etc/agentk/token/token",
		"--kas-ca-cert-file=/etc/agentk/kas-ca/ca.crt", "--kas-header=Cookie: gitlab-canary"} {
		if !slices.Contains(a, want) {
			t.Errorf("args %q lack %q", a, want)
		}
	}
	env := map[string]any{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = e
	}
	for _, name := range []string{"POD_NAMESPACE", "POD_NAME", "GOMEMLIMIT"} {
		if env[name] == nil {
			t.Errorf("env lacks %s: %v", name, get(c, "env"))
		}
	}
	if str(c, "image") != "kubetunnel/agentk:v16.11.0" || fmt.Sprint(get(d, "spec", "replicas")) != "2" {
		t.Errorf("image %q replicas %v", str(c, "image"), get(d, "spec", "replicas"))
	}

	// An existing Secret (config.secretName) holds the token under "token",
	// as the gitlab-agent chart expects it.
	r = mustRender(t, "agentk", "gitlab-agent", ns, "config:\n  kasAddress: wss://kas.gitlab.example.com\n  secretName: gitlab-agent-token\n")
	dryRunApply(t, r)
	if s := r.find("Secret"); len(s) != 0 {
		t.Errorf("a Secret was rendered although config.secretName is set: %v", s)
	}
	vols := fmt.Sprint(get(r.one(t, "Deployment"), "spec", "template", "spec", "volumes"))
	if !strings.Contains(vols, "secretName:gitlab-agent-token") || !strings.Contains(vols, "key:token") {
		t.Errorf("volumes %s: want the token from Secret gitlab-agent-token, key token", vols)
	}

	// Ours win when both are set.
	r = mustRender(t, "agentk", "gitlab-agent", ns, gitlabAgentValues+"kasAddress: wss://ours.example.com/\n")
	if a := args(container(r.one(t, "Deployment"))); !slices.Contains(a, "--kas-address=wss://ours.example.com/") {
		t.Errorf("args %q: kasAddress should win over config.kasAddress", a)
	}
}
