package chart_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"kubetunnel/internal/testutil/controlplane"
	"kubetunnel/kas"
)

// values.schema.json: a typo or a wrong type fails the install with the
// key named, instead of rendering silently.
func TestKasValuesSchema(t *testing.T) {
	for name, c := range map[string]struct{ values, want string }{
		"typo at the top":     {"replica: 2\n", "replica"},
		"typo nested":         {"podDisruptionBudget:\n  enable: true\n", "enable"},
		"typo in gitlab":      {"gitlab:\n  secretNme: s\n", "secretNme"},
		"typo in service":     {"service:\n  exposeObservabilty: true\n", "exposeObservabilty"},
		"typo in ingress":     {"ingress:\n  agent:\n    hostname: kas.example.com\n", "hostname"},
		"wrong type":          {"replicas: two\n", "replicas"},
		"bad enum":            {"logFormat: xml\n", "logFormat"},
		"bad log level":       {"logLevel: verbose\n", "logLevel"},
		"typo in config keys": {"config:\n  agnets: []\n", "agnets"},
		"bad port":            {"ports:\n  agent: 70000\n", "agent"},
	} {
		_, err := renderChart("kas", "kas", "default", c.values)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: render error %v, want one naming %q", name, err, c.want)
		}
	}
	// Everything the chart and its docs use is valid.
	for _, v := range []string{"", kasValues, kasGitLabValues, "config: {observability: {status: {public: true}}}"} {
		if _, err := renderChart("kas", "kas", "default", v); err != nil {
			t.Errorf("values %q: %v", v, err)
		}
	}
}

// The schema's config keys are exactly kas's top-level config keys: a new
// kas section cannot be refused by the chart, nor a removed one accepted.
func TestKasValuesSchemaConfigKeys(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "chart", "kas", "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Config struct {
				Properties           map[string]any `json:"properties"`
				AdditionalProperties bool           `json:"additionalProperties"`
			} `json:"config"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for k := range schema.Properties.Config.Properties {
		got = append(got, k)
	}
	typ := reflect.TypeFor[kas.Config]()
	for i := range typ.NumField() {
		if tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			want = append(want, tag)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) || schema.Properties.Config.AdditionalProperties {
		t.Errorf("schema config keys %v (additionalProperties %v), kas.Config keys %v", got, schema.Properties.Config.AdditionalProperties, want)
	}
}

// kasGitLabValues is a valid install with GitLab as the agent registry.
const kasGitLabValues = `
gitlab:
  secretName: gitlab-kas-secret
  gitPasswordSecretName: gitlab-deploy-token
  caSecretName: gitlab-ca
config:
  gitlab:
    address: https://gitlab.example.com
    git: {username: gitlab+deploy-token-12}
`

// kasReplicaValues is a valid several-replica install.
const kasReplicaValues = `
replicas: 3
privateAPI: {secretName: kas-private-api}
config:
  redis: {address: "redis.kas.svc:6379"}
`

func envOf(c map[string]any) map[string]string {
	env := map[string]string{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = str(e, "value")
	}
	return env
}

// PodDisruptionBudget, topology spread, GOMEMLIMIT from the memory limit,
// extraVolumes/extraVolumeMounts/extraEnv, --log-format and the status
// page's public switch: rendered as asked, accepted by kas and the real
// API server.
func TestKasOperatorValues(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "kas", "kas", ns, `
replicas: 3
privateAPI: {secretName: kas-private-api}
logFormat: json
topologySpreadConstraints:
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
extraEnv:
- name: EXTRA
  value: "1"
extraVolumes:
- name: git-token
  secret: {secretName: git-token}
extraVolumeMounts:
- name: git-token
  mountPath: /etc/kas/git
  readOnly: true
config:
  redis: {address: "redis.kas.svc:6379"}
  observability:
    status: {public: true}
  repositories:
  - id: platform/agents
    url: https://git.example.com/platform/agents.git
    token_file: /etc/kas/git/token
`)
	dryRunApply(t, r)
	cfg := kasConfig(t, r)
	checkKasDeployment(t, r, cfg)
	if !cfg.Observability.Status.Public || cfg.Observability.Listen.Address != ":8151" {
		t.Errorf("observability %+v: want status.public from the values and the chart's listener", cfg.Observability)
	}
	d := r.one(t, "Deployment")
	spec := get(d, "spec", "template", "spec")
	c := container(d)
	checkArgs(t, binary(t, "kas"), c, "config")
	env := envOf(c)
	// 1Gi × 0.9
	if env["GOMEMLIMIT"] != "966367641" || env["EXTRA"] != "1" || !strings.Contains(fmt.Sprint(get(c, "env")), "name:POD_IP") {
		t.Errorf("env %v: want GOMEMLIMIT=966367641 (0.9 × 1Gi), EXTRA=1 and POD_IP", get(c, "env"))
	}
	if a := strings.Join(args(c), " "); !strings.Contains(a, "--log-format=json") {
		t.Errorf("args %s lack --log-format=json", a)
	}
	tsc := get(spec, "topologySpreadConstraints", 0)
	if str(tsc, "topologyKey") != "topology.kubernetes.io/zone" || str(tsc, "labelSelector", "matchLabels", "app.kubernetes.io/instance") != "kas" {
		t.Errorf("topologySpreadConstraints %v: want the zone key and this release's pod labels as labelSelector", tsc)
	}
	pdb := r.one(t, "PodDisruptionBudget")
	if fmt.Sprint(get(pdb, "spec", "maxUnavailable")) != "1" || str(pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/instance") != "kas" {
		t.Errorf("PodDisruptionBudget %v", pdb)
	}
	// minAvailable wins; one replica, or enabled: false, gets none.
	r = mustRender(t, "kas", "kas", ns, kasReplicaValues+"podDisruptionBudget: {minAvailable: 2}\n")
	if p := r.one(t, "PodDisruptionBudget"); fmt.Sprint(get(p, "spec", "minAvailable")) != "2" || get(p, "spec", "maxUnavailable") != nil {
		t.Errorf("PodDisruptionBudget %v: want minAvailable 2 only", get(p, "spec"))
	}
	for _, v := range []string{"", kasReplicaValues + "podDisruptionBudget: {enabled: false}\n"} {
		if n := len(mustRender(t, "kas", "kas", ns, v).find("PodDisruptionBudget")); n != 0 {
			t.Errorf("values %q: %d PodDisruptionBudgets, want none", v, n)
		}
	}
	// The default is text, and kas takes it.
	r = mustRender(t, "kas", "kas", ns, "")
	if a := strings.Join(args(container(r.one(t, "Deployment"))), " "); !strings.Contains(a, "--log-format=text") {
		t.Errorf("default args %s: want --log-format=text", a)
	}

	// GOMEMLIMIT: other units; none without a limit; the user's own wins;
	// a quantity it cannot read fails with the key named.
	for limits, want := range map[string]string{"1G": "900000000", "536870912": "483183820", "768Mi": "724775731"} {
		r := mustRender(t, "kas", "kas", ns, "resources:\n  limits:\n    memory: "+limits+"\n")
		if got := envOf(container(r.one(t, "Deployment")))["GOMEMLIMIT"]; got != want {
			t.Errorf("limits.memory %s: GOMEMLIMIT %q, want %q", limits, got, want)
		}
	}
	for _, v := range []string{"resources:\n  limits:\n    memory: null\n", "goMemLimit: {enabled: false}\n"} {
		r = mustRender(t, "kas", "kas", ns, v)
		if strings.Contains(fmt.Sprint(get(container(r.one(t, "Deployment")), "env")), "GOMEMLIMIT") {
			t.Errorf("values %q: GOMEMLIMIT set", v)
		}
	}
	r = mustRender(t, "kas", "kas", ns, "env:\n- {name: GOMEMLIMIT, value: 400MiB}\n")
	n := 0
	for _, e := range list(container(r.one(t, "Deployment")), "env") {
		if str(e, "name") == "GOMEMLIMIT" {
			n++
			if str(e, "value") != "400MiB" {
				t.Errorf("env's GOMEMLIMIT replaced by %q", str(e, "value"))
			}
		}
	}
	if n != 1 {
		t.Errorf("%d GOMEMLIMIT entries with env setting it, want 1", n)
	}
	if _, err := renderChart("kas", "kas", ns, "resources:\n  limits:\n    memory: lots\n"); err == nil || !strings.Contains(err.Error(), "resources.limits.memory") {
		t.Errorf("limits.memory lots: %v, want an error naming resources.limits.memory", err)
	}
}

// containerPortNames are the named ports of the kas container.
func containerPortNames(c map[string]any) []string {
	var names []string
	for _, p := range list(c, "ports") {
		names = append(names, str(p, "name"))
	}
	return names
}

// The NetworkPolicy lets agents, kubectl and GitLab reach their listeners,
// the other replicas the private API, and only the namespace (or the
// peers named) the unauthenticated observability port; every port it
// names is a container port.
func TestKasNetworkPolicy(t *testing.T) {
	ns := namespace(t)
	if n := len(mustRender(t, "kas", "kas", ns, "").find("NetworkPolicy")); n != 0 {
		t.Errorf("%d NetworkPolicies by default, want none", n)
	}
	r := mustRender(t, "kas", "kas", ns, `
replicas: 2
privateAPI: {secretName: kas-private-api}
gitlab: {secretName: gitlab-kas-secret}
config:
  redis: {address: "redis.kas.svc:6379"}
  gitlab: {address: "https://gitlab.example.com"}
networkPolicy:
  enabled: true
  egress:
  - ports: [{port: 53, protocol: UDP}]
`)
	dryRunApply(t, r)
	np := r.one(t, "NetworkPolicy")
	ports := containerPortNames(container(r.one(t, "Deployment")))
	from := map[string]string{}
	for _, rule := range list(np, "spec", "ingress") {
		for _, p := range list(rule, "ports") {
			if !slices.Contains(ports, str(p, "port")) {
				t.Errorf("NetworkPolicy names port %q; the container has %v", str(p, "port"), ports)
			}
			from[str(p, "port")] = fmt.Sprint(get(rule, "from"))
		}
	}
	want := map[string]string{
		"agent":          "<nil>",
		"kubernetes-api": "<nil>",
		"api":            "<nil>",
		"private-api":    "[map[podSelector:map[matchLabels:map[app.kubernetes.io/instance:kas app.kubernetes.io/name:kas]]]]",
		"observability":  "[map[podSelector:map[]]]",
	}
	if !reflect.DeepEqual(from, want) {
		t.Errorf("NetworkPolicy ingress by port %v, want %v", from, want)
	}
	if fmt.Sprint(get(np, "spec", "policyTypes")) != "[Ingress Egress]" || fmt.Sprint(get(np, "spec", "egress", 0, "ports", 0, "port")) != "53" {
		t.Errorf("NetworkPolicy %v: want the egress rules given", get(np, "spec"))
	}
	if str(np, "spec", "podSelector", "matchLabels", "app.kubernetes.io/instance") != "kas" {
		t.Errorf("NetworkPolicy selects %v", get(np, "spec", "podSelector"))
	}

	// Agents from given peers; observability also from the monitoring
	// namespace; no egress rules: egress open, no api/private-api rules.
	r = mustRender(t, "kas", "kas", ns, `
networkPolicy:
  enabled: true
  agentFrom: [{ipBlock: {cidr: 10.0.0.0/8}}]
  observabilityFrom:
  - podSelector: {}
  - namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: monitoring}
`)
	dryRunApply(t, r)
	np = r.one(t, "NetworkPolicy")
	if fmt.Sprint(get(np, "spec", "policyTypes")) != "[Ingress]" {
		t.Errorf("policyTypes %v, want [Ingress] without egress rules", get(np, "spec", "policyTypes"))
	}
	rules := list(np, "spec", "ingress")
	if len(rules) != 2 || fmt.Sprint(get(rules[0], "ports")) != "[map[port:agent protocol:TCP] map[port:kubernetes-api protocol:TCP]]" ||
		str(rules[0], "from", 0, "ipBlock", "cidr") != "10.0.0.0/8" ||
		str(rules[1], "ports", 0, "port") != "observability" || str(rules[1], "from", 1, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") != "monitoring" {
		t.Errorf("NetworkPolicy ingress %v", rules)
	}
}

// Ingresses for the agent WebSocket and the Kubernetes API listener:
// routed to the Service ports of those listeners, with the annotations
// ingress-nginx needs for connections open for hours, and admitted by the
// real API server.
func TestKasIngress(t *testing.T) {
	ns := namespace(t)
	if n := len(mustRender(t, "kas", "kas", ns, "ingress: {agent: {host: kas.example.com}}").find("Ingress")); n != 0 {
		t.Errorf("%d Ingresses without ingress.enabled, want none", n)
	}
	r := mustRender(t, "kas", "kas", ns, `
tls:
  kubernetesAPI: {secretName: kas-api-tls}
ingress:
  enabled: true
  className: nginx
  annotations: {cert-manager.io/cluster-issuer: letsencrypt}
  agent:
    host: kas.example.com
    tls: [{hosts: [kas.example.com], secretName: kas-ingress-tls}]
  kubernetesAPI:
    host: k8s-proxy.example.com
    annotations: {nginx.ingress.kubernetes.io/proxy-read-timeout: "7200"}
`)
	dryRunApply(t, r)
	svc, _ := kasServices(t, r)
	svcPorts := map[string]bool{}
	for _, p := range list(svc, "spec", "ports") {
		svcPorts[str(p, "name")] = true
	}
	ings := r.find("Ingress")
	if len(ings) != 2 {
		t.Fatalf("%d Ingresses, want 2:\n%s", len(ings), r.YAML)
	}
	for _, ing := range ings {
		ann := func(k string) string { return str(ing, "metadata", "annotations", k) }
		backend := get(ing, "spec", "rules", 0, "http", "paths", 0, "backend", "service")
		if str(backend, "name") != svc.name() || !svcPorts[str(backend, "port", "name")] {
			t.Errorf("Ingress %s routes to %v; the Service %s has ports %v", ing.name(), backend, svc.name(), svcPorts)
		}
		if str(ing, "spec", "ingressClassName") != "nginx" || ann("cert-manager.io/cluster-issuer") != "letsencrypt" ||
			ann("nginx.ingress.kubernetes.io/proxy-send-timeout") != "3600" || ann("nginx.ingress.kubernetes.io/proxy-buffering") != "off" ||
			ann("nginx.ingress.kubernetes.io/proxy-body-size") != "0" {
			t.Errorf("Ingress %s metadata %v spec %v", ing.name(), get(ing, "metadata"), get(ing, "spec"))
		}
		switch ing.name() {
		case "kas-agent":
			if str(ing, "spec", "rules", 0, "host") != "kas.example.com" || str(backend, "port", "name") != "agent" ||
				str(ing, "spec", "tls", 0, "secretName") != "kas-ingress-tls" ||
				ann("nginx.ingress.kubernetes.io/proxy-read-timeout") != "3600" || ann("nginx.ingress.kubernetes.io/backend-protocol") != "" {
				t.Errorf("agent Ingress %v", ing)
			}
		case "kas-kubernetes-api":
			// The listener has TLS: nginx must speak HTTPS to it; the
			// Ingress's own annotations win.
			if str(ing, "spec", "rules", 0, "host") != "k8s-proxy.example.com" || str(backend, "port", "name") != "kubernetes-api" ||
				ann("nginx.ingress.kubernetes.io/backend-protocol") != "HTTPS" || ann("nginx.ingress.kubernetes.io/proxy-read-timeout") != "7200" {
				t.Errorf("kubernetes-api Ingress %v", ing)
			}
		default:
			t.Errorf("unexpected Ingress %s", ing.name())
		}
	}
	if !strings.Contains(r.Notes, "--kas-address=wss://kas.example.com/") || !strings.Contains(r.Notes, "http://k8s-proxy.example.com/agents/NAME") {
		t.Errorf("NOTES do not name the Ingress addresses:\n%s", r.Notes)
	}
	// Only the listeners with a host; no nginx annotations when asked.
	r = mustRender(t, "kas", "kas", ns, "ingress: {enabled: true, nginxAnnotations: false, kubernetesAPI: {host: k.example.com}}")
	dryRunApply(t, r)
	if ing := r.one(t, "Ingress"); ing.name() != "kas-kubernetes-api" || get(ing, "metadata", "annotations") != nil {
		t.Errorf("Ingress %v: want kas-kubernetes-api only, no annotations", ing)
	}
	// Enabled without a host would render nothing.
	if _, err := renderChart("kas", "kas", ns, "ingress: {enabled: true}"); err == nil || !strings.Contains(err.Error(), "ingress.agent.host") {
		t.Errorf("ingress.enabled without hosts: %v, want an error naming ingress.agent.host", err)
	}
	// Raw TCP agents cannot go through an Ingress.
	_, err := renderChart("kas", "kas", ns, "ingress: {enabled: true, agent: {host: kas.example.com}}\nconfig: {agent: {listen: {websocket: false}}}")
	if err == nil || !strings.Contains(err.Error(), "websocket") {
		t.Errorf("Ingress for a raw TCP agent listener: %v, want an error naming websocket", err)
	}
}
