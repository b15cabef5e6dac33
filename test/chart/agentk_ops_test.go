package chart_test

import (
	"fmt"
	"strings"
	"testing"
)

// values.schema.json: a typo or a wrong type fails the install with the
// key named, instead of rendering silently; the official gitlab-agent
// chart's values stay valid (TestAgentkGitLabChartValues renders them).
func TestAgentkValuesSchema(t *testing.T) {
	for name, c := range map[string]struct{ values, want string }{
		"typo at the top":   {"replica: 2\n", "replica"},
		"typo nested":       {"podDisruptionBudget:\n  enable: true\n", "enable"},
		"wrong type":        {"replicas: two\n", "replicas"},
		"bad enum":          {"logFormat: xml\n", "logFormat"},
		"bad scheme":        {"kasAddress: https://kas.example.com/\n", "kasAddress"},
		"gitlab chart typo": {"config:\n  kasAdress: wss://x/\n", "kasAdress"},
	} {
		_, err := renderChart("agentk", "agentk", "default", minimalAgentk+c.values)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: render error %v, want one naming %q", name, err, c.want)
		}
	}
	if _, err := renderChart("agentk", "agentk", "default", gitlabAgentValues+"maxSurge: 1\nhostAliases: []\nrbac:\n  useExistingRole: my-role\n"); err != nil {
		t.Errorf("the gitlab-agent chart's accepted-but-ignored values: %v", err)
	}
}

// PodDisruptionBudget, topology spread, NetworkPolicy, GOMEMLIMIT from the
// memory limit, extraVolumes/extraVolumeMounts/extraEnv and --log-format:
// rendered as asked, and admitted by the real API server.
func TestAgentkOperatorValues(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "agentk", "agentk", ns, minimalAgentk+`
replicas: 3
logFormat: json
podDisruptionBudget:
  enabled: true
topologySpreadConstraints:
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
networkPolicy:
  enabled: true
  observabilityFrom:
  - namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: monitoring}
extraVolumes:
- name: extra-ca
  configMap: {name: extra-ca}
extraVolumeMounts:
- name: extra-ca
  mountPath: /etc/extra-ca
  readOnly: true
extraEnv:
- name: EXTRA
  value: "1"
`)
	dryRunApply(t, r)

	d := r.one(t, "Deployment")
	spec := get(d, "spec", "template", "spec")
	c := container(d)
	env := map[string]string{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = str(e, "value")
	}
	// 512Mi × 0.9
	if env["GOMEMLIMIT"] != "483183820" || env["EXTRA"] != "1" {
		t.Errorf("env %v: want GOMEMLIMIT=483183820 (0.9 × 512Mi) and EXTRA=1", get(c, "env"))
	}
	if a := strings.Join(args(c), " "); !strings.Contains(a, "--log-format=json") {
		t.Errorf("args %s lack --log-format=json", a)
	}
	if !mountsCover(c, "/etc/extra-ca/ca.crt") || !strings.Contains(fmt.Sprint(get(spec, "volumes")), "name:extra-ca") {
		t.Errorf("extra volume not mounted: %v %v", get(c, "volumeMounts"), get(spec, "volumes"))
	}
	tsc := get(spec, "topologySpreadConstraints", 0)
	if str(tsc, "topologyKey") != "topology.kubernetes.io/zone" || str(tsc, "labelSelector", "matchLabels", "app.kubernetes.io/instance") != "agentk" {
		t.Errorf("topologySpreadConstraints %v: want the zone key and this release's pod labels as labelSelector", tsc)
	}
	pdb := r.one(t, "PodDisruptionBudget")
	if fmt.Sprint(get(pdb, "spec", "maxUnavailable")) != "1" || str(pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/instance") != "agentk" {
		t.Errorf("PodDisruptionBudget %v", pdb)
	}
	np := r.one(t, "NetworkPolicy")
	if fmt.Sprint(get(np, "spec", "policyTypes")) != "[Ingress]" || str(np, "spec", "ingress", 0, "ports", 0, "port") != "observability" ||
		str(np, "spec", "ingress", 0, "from", 0, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") != "monitoring" {
		t.Errorf("NetworkPolicy %v: want ingress only to the observability port from the monitoring namespace, egress open", np)
	}

	// GOMEMLIMIT: other units; none without a limit; the user's own wins;
	// a quantity it cannot read fails with the key named.
	for limits, want := range map[string]string{"1G": "900000000", "1073741824": "966367641", "768Mi": "724775731"} {
		r := mustRender(t, "agentk", "agentk", ns, minimalAgentk+"resources:\n  limits:\n    memory: "+limits+"\n")
		var got string
		for _, e := range list(container(r.one(t, "Deployment")), "env") {
			if str(e, "name") == "GOMEMLIMIT" {
				got = str(e, "value")
			}
		}
		if got != want {
			t.Errorf("limits.memory %s: GOMEMLIMIT %q, want %q", limits, got, want)
		}
	}
	r = mustRender(t, "agentk", "agentk", ns, minimalAgentk+"resources:\n  limits:\n    memory: null\n")
	if strings.Contains(fmt.Sprint(get(container(r.one(t, "Deployment")), "env")), "GOMEMLIMIT") {
		t.Error("GOMEMLIMIT set without a memory limit")
	}
	r = mustRender(t, "agentk", "agentk", ns, gitlabAgentValues)
	n := 0
	for _, e := range list(container(r.one(t, "Deployment")), "env") {
		if str(e, "name") == "GOMEMLIMIT" {
			n++
			if str(e, "value") != "400MiB" {
				t.Errorf("extraEnv's GOMEMLIMIT replaced by %q", str(e, "value"))
			}
		}
	}
	if n != 1 {
		t.Errorf("%d GOMEMLIMIT entries with extraEnv setting it, want 1", n)
	}
	if _, err := renderChart("agentk", "agentk", ns, minimalAgentk+"resources:\n  limits:\n    memory: lots\n"); err == nil || !strings.Contains(err.Error(), "resources.limits.memory") {
		t.Errorf("limits.memory lots: %v, want an error naming resources.limits.memory", err)
	}
}
