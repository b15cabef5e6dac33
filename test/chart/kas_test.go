package chart_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"kubetunnel/kas"
)

// kasValues declares an agent and a user, as a real install does.
const kasValues = `
config:
  repositories:
  - id: platform/agents
    url: https://git.example.com/platform/agents.git
    token_file: /etc/kas/git/token
  agents:
  - name: production
    config_project: platform/agents
    token_sha256: ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
  users:
  - name: alice
    token_sha256: ["60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"]
    groups: [developers]
    agents: [production]
extraVolumes:
- name: git-token
  secret: {secretName: git-token}
extraVolumeMounts:
- name: git-token
  mountPath: /etc/kas/git
  readOnly: true
`

// kasConfig returns the rendered config.yaml after kas.ParseConfig (which
// defaults and validates it, and rejects unknown keys).
func kasConfig(t *testing.T, r *rendered) *kas.Config {
	t.Helper()
	data := str(r.one(t, "ConfigMap"), "data", "config.yaml")
	cfg, err := kas.ParseConfig([]byte(data))
	if err != nil {
		t.Fatalf("kas rejects the rendered config: %v\n%s", err, data)
	}
	return cfg
}

// checkKasDeployment checks what every kas rendering must hold: the config
// mounted where --config points, every file the config names on a mount,
// listeners on the container and Service ports, probes on observability.
func checkKasDeployment(t *testing.T, r *rendered, cfg *kas.Config) {
	t.Helper()
	d := r.one(t, "Deployment")
	c := container(d)
	checkArgs(t, binary(t, "kas"), c, "config")
	files := []string{cfg.Git.CacheDir + "/x",
		cfg.Agent.Listen.CertificateFile, cfg.Agent.Listen.KeyFile,
		cfg.Agent.KubernetesAPI.Listen.CertificateFile, cfg.Agent.KubernetesAPI.Listen.KeyFile}
	for _, repo := range cfg.Repositories {
		files = append(files, repo.TokenFile, repo.PasswordFile, repo.SSHKeyFile, repo.KnownHostsFile, repo.CAFile)
	}
	if p := cfg.PrivateAPI; p != nil {
		files = append(files, p.AuthenticationSecretFile, p.Listen.CertificateFile, p.Listen.KeyFile, p.CACertificateFile, cfg.Redis.PasswordFile)
	}
	for _, f := range files {
		if f != "" && !mountsCover(c, f) {
			t.Errorf("the config names %s, which is on no volume mount (%v)", f, get(c, "volumeMounts"))
		}
	}
	ports := map[string]string{}
	for _, p := range list(c, "ports") {
		ports[str(p, "name")] = fmt.Sprint(get(p, "containerPort"))
	}
	listeners := map[string]string{
		"agent":          cfg.Agent.Listen.Address,
		"kubernetes-api": cfg.Agent.KubernetesAPI.Listen.Address,
		"observability":  cfg.Observability.Listen.Address,
	}
	if cfg.PrivateAPI != nil {
		listeners["private-api"] = cfg.PrivateAPI.Listen.Address
	}
	for name, addr := range listeners {
		if ":"+ports[name] != addr {
			t.Errorf("container port %s is %q; kas listens on %q", name, ports[name], addr)
		}
	}
	svc, obs := kasServices(t, r)
	svcPorts := map[string]string{}
	for _, p := range list(svc, "spec", "ports") {
		svcPorts[str(p, "name")] = str(p, "targetPort")
	}
	for _, name := range []string{"agent", "kubernetes-api"} {
		if svcPorts[name] != name {
			t.Errorf("Service port %s targets %q, want the container port %s (Service ports: %v)", name, svcPorts[name], name, svcPorts)
		}
	}
	if p := list(obs, "spec", "ports"); len(p) != 1 || str(p[0], "targetPort") != "observability" || str(obs, "spec", "type") != "ClusterIP" {
		t.Errorf("observability Service %v: want one port, observability, on a ClusterIP Service", get(obs, "spec"))
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if str(c, probe, "httpGet", "path") != path || str(c, probe, "httpGet", "port") != "observability" {
			t.Errorf("%s %v: want GET %s on the observability port", probe, get(c, probe), path)
		}
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") != true || !mountsCover(c, "/tmp/x") {
		t.Errorf("want a read-only root filesystem and /tmp on a volume")
	}
	if fmt.Sprint(get(d, "spec", "template", "spec", "securityContext", "runAsUser")) != "65532" {
		t.Errorf("pod securityContext %v: want runAsUser 65532", get(d, "spec", "template", "spec", "securityContext"))
	}
	// The config ConfigMap must be the one mounted.
	cmName := r.one(t, "ConfigMap").name()
	if !strings.Contains(fmt.Sprint(get(d, "spec", "template", "spec", "volumes")), "name:"+cmName) {
		t.Errorf("ConfigMap %s is not among the volumes", cmName)
	}
}

// kasServices returns the agent Service and the observability Service.
func kasServices(t *testing.T, r *rendered) (svc, obs object) {
	t.Helper()
	for _, o := range r.find("Service") {
		if strings.HasSuffix(o.name(), "-observability") {
			obs = o
		} else {
			svc = o
		}
	}
	if svc == nil || obs == nil || len(r.find("Service")) != 2 {
		t.Fatalf("want an agent Service and an observability Service:\n%s", r.YAML)
	}
	return svc, obs
}

// The observability port (metrics, status API, webhook: no
// authentication) is not on the agent Service by default, so
// service.type LoadBalancer does not publish it.
func TestKasObservabilityStaysInternal(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "kas", "kas", ns, "service: {type: LoadBalancer}")
	dryRunApply(t, r)
	svc, obs := kasServices(t, r)
	for _, p := range list(svc, "spec", "ports") {
		if str(p, "name") == "observability" || str(p, "targetPort") == "observability" {
			t.Errorf("the %s Service publishes the observability port: %v", str(svc, "spec", "type"), get(svc, "spec", "ports"))
		}
	}
	if str(obs, "spec", "type") != "ClusterIP" {
		t.Errorf("observability Service type %q, want ClusterIP", str(obs, "spec", "type"))
	}
	// Asked for explicitly, it is there.
	r = mustRender(t, "kas", "kas", ns, "service: {exposeObservability: true}")
	svc, _ = kasServices(t, r)
	if !strings.Contains(fmt.Sprint(get(svc, "spec", "ports")), "observability") {
		t.Errorf("service.exposeObservability: true left it off: %v", get(svc, "spec", "ports"))
	}
}

func TestKasDefaults(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "kas", "kas", ns, "")
	dryRunApply(t, r)
	cfg := kasConfig(t, r)
	checkKasDeployment(t, r, cfg)
	if cfg.Agent.Listen.Address != ":8150" || cfg.Agent.KubernetesAPI.Listen.Address != ":8154" || cfg.Observability.Listen.Address != ":8151" {
		t.Errorf("listeners %s %s %s, want :8150 :8154 :8151", cfg.Agent.Listen.Address, cfg.Agent.KubernetesAPI.Listen.Address, cfg.Observability.Listen.Address)
	}
	if cfg.Agent.Listen.CertificateFile != "" || cfg.Agent.KubernetesAPI.Listen.CertificateFile != "" {
		t.Error("TLS configured without tls.*.secretName")
	}
	// A rolling update refuses no connection and cuts no request: kas
	// keeps serving while the Service drops the pod, then drains, all
	// before the kubelet's SIGKILL.
	l := cfg.Agent.Listen
	if l.ListenGracePeriod != 5*time.Second {
		t.Errorf("agent.listen.listen_grace_period %v, want 5s", l.ListenGracePeriod)
	}
	d := r.one(t, "Deployment")
	grace := fmt.Sprint(get(d, "spec", "template", "spec", "terminationGracePeriodSeconds"))
	if secs, err := strconv.Atoi(grace); err != nil || time.Duration(secs)*time.Second <= l.ListenGracePeriod+l.DrainTimeout {
		t.Errorf("terminationGracePeriodSeconds %s, want more than listen_grace_period + drain_timeout (%v)", grace, l.ListenGracePeriod+l.DrainTimeout)
	}
	if fmt.Sprint(get(d, "spec", "replicas")) != "1" {
		t.Errorf("replicas %v, want 1", get(d, "spec", "replicas"))
	}
	if get(d, "spec", "template", "spec", "volumes", 1, "emptyDir") == nil {
		t.Errorf("git cache volume %v: want an emptyDir by default", get(d, "spec", "template", "spec", "volumes", 1))
	}
	if n := len(r.find("PersistentVolumeClaim")); n != 0 {
		t.Errorf("%d PVCs by default", n)
	}
}

func TestKasWithAgentsAndTLS(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "kas", "kas", ns, kasValues+`
tls:
  agent: {secretName: kas-tls}
  kubernetesAPI: {secretName: kas-api-tls}
service:
  type: NodePort
  nodePorts: {agent: 30150, kubernetesAPI: 30154}
gitCache:
  persistence: {enabled: true, size: 5Gi}
`)
	dryRunApply(t, r)
	cfg := kasConfig(t, r)
	checkKasDeployment(t, r, cfg)
	if cfg.Agent.Listen.CertificateFile != "/etc/kas/tls/agent/tls.crt" || cfg.Agent.KubernetesAPI.Listen.KeyFile != "/etc/kas/tls/kubernetes-api/tls.key" {
		t.Errorf("TLS files: agent %q, kubernetes_api %q", cfg.Agent.Listen.CertificateFile, cfg.Agent.KubernetesAPI.Listen.KeyFile)
	}
	if len(cfg.Agents) != 1 || len(cfg.Users) != 1 || cfg.Users[0].Agents[0] != "production" {
		t.Errorf("agents %v users %v: the values' entries did not reach the config", cfg.Agents, cfg.Users)
	}
	d := r.one(t, "Deployment")
	vols := fmt.Sprint(get(d, "spec", "template", "spec", "volumes"))
	for _, want := range []string{"secretName:kas-tls", "secretName:kas-api-tls", "claimName:kas-git-cache", "secretName:git-token"} {
		if !strings.Contains(vols, want) {
			t.Errorf("volumes %s lack %s", vols, want)
		}
	}
	if str(d, "spec", "strategy", "type") != "Recreate" {
		t.Errorf("strategy %v: want Recreate with a ReadWriteOnce git cache", get(d, "spec", "strategy"))
	}
	pvc := r.one(t, "PersistentVolumeClaim")
	if str(pvc, "spec", "resources", "requests", "storage") != "5Gi" {
		t.Errorf("PVC %v", get(pvc, "spec"))
	}
	var nodePorts []string
	svc, _ := kasServices(t, r)
	for _, p := range list(svc, "spec", "ports") {
		nodePorts = append(nodePorts, fmt.Sprint(get(p, "nodePort")))
	}
	if !slices.Contains(nodePorts, "30150") || !slices.Contains(nodePorts, "30154") {
		t.Errorf("node ports %v", nodePorts)
	}
	if !strings.Contains(r.Notes, "wss://kas.") {
		t.Errorf("NOTES do not suggest wss:// with TLS:\n%s", r.Notes)
	}
}

// Several replicas: Redis from the values, the private API, its secret
// and the pod IP from the chart.
func TestKasReplicas(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "kas", "kas", ns, kasValues+`
replicas: 3
privateAPI:
  secretName: kas-private-api
  tls: {secretName: kas-private-api-tls}
redisPasswordSecretName: kas-redis
config:
  redis:
    address: redis.kas.svc:6379
    key_prefix: prod-kas
  private_api:
    server_name: kas-private-api
`)
	dryRunApply(t, r)
	cfg := kasConfig(t, r)
	checkKasDeployment(t, r, cfg)
	if cfg.Redis.Address != "redis.kas.svc:6379" || cfg.Redis.KeyPrefix != "prod-kas" || cfg.Redis.PasswordFile != "/etc/kas/redis/password" {
		t.Errorf("redis %+v", cfg.Redis)
	}
	p := cfg.PrivateAPI
	if p.Listen.Address != ":8155" || p.AuthenticationSecretFile != "/etc/kas/private-api/secret" || p.ServerName != "kas-private-api" ||
		p.Listen.CertificateFile != "/etc/kas/tls/private-api/tls.crt" || p.CACertificateFile != "/etc/kas/tls/private-api/ca.crt" {
		t.Errorf("private_api %+v", p)
	}
	d := r.one(t, "Deployment")
	if fmt.Sprint(get(d, "spec", "replicas")) != "3" {
		t.Errorf("replicas %v", get(d, "spec", "replicas"))
	}
	// kas takes its advertised address from POD_IP.
	env := fmt.Sprint(get(container(d), "env"))
	if !strings.Contains(env, "name:"+kas.EnvPodIP) || !strings.Contains(env, "fieldPath:status.podIP") {
		t.Errorf("env %s: want %s from status.podIP", env, kas.EnvPodIP)
	}
	vols := fmt.Sprint(get(d, "spec", "template", "spec", "volumes"))
	for _, want := range []string{"secretName:kas-private-api]", "secretName:kas-private-api-tls", "secretName:kas-redis"} {
		if !strings.Contains(vols, want) {
			t.Errorf("volumes %s lack %s", vols, want)
		}
	}
}

// A config change rolls the pods (checksum/config), except, with
// liveReload (the default), a change to only the keys kas reloads from the
// mounted file; the file is mounted as a directory, which kubelet updates
// in place (a subPath mount never changes).
func TestKasConfigChangeRollsPods(t *testing.T) {
	sum := func(values string) string {
		t.Helper()
		r := mustRender(t, "kas", "kas", "default", values)
		return str(r.one(t, "Deployment"), "spec", "template", "metadata", "annotations", "checksum/config")
	}
	// with edits kasValues (old, new pairs) and puts prefix first.
	with := func(prefix string, edits ...string) string {
		return prefix + strings.NewReplacer(edits...).Replace(kasValues)
	}
	reloadable := map[string][]string{
		"users[]": {"name: alice", "name: carol"},
		"agents[] and repositories[]": {"name: production\n", "name: staging\n", "agents: [production]", "agents: [staging]",
			"platform/agents.git", "platform/agents2.git"},
		"the two reloadable limits": {"config:\n", "config:\n  limits:\n    max_connections_per_agent: 7\n    max_agent_streams_per_connection: 50\n"},
	}
	restart := []string{"config:\n", "config:\n  agent:\n    listen:\n      drain_timeout: 11s\n"}
	base, none := sum(kasValues), sum("")
	if base == "" || base != none {
		t.Errorf("liveReload (default): checksum/config %q without agents, users and repositories, %q with them: want the annotation, the same", none, base)
	}
	for what, edits := range reloadable {
		if got := sum(with("", edits...)); got != base {
			t.Errorf("liveReload (default): changing %s changed checksum/config (%s → %s): the pods would restart instead of reloading", what, base, got)
		}
		off := "liveReload: false\n"
		if sum(with(off, edits...)) == sum(off+kasValues) {
			t.Errorf("liveReload false: changing %s left checksum/config as it was: want the pods rolled", what)
		}
	}
	if got := sum(with("", restart...)); got == base {
		t.Errorf("liveReload: changing agent.listen.drain_timeout (needs a restart) left checksum/config as it was")
	}
	if sum("liveReload: false\n"+kasValues) == sum("liveReload: false\n") {
		t.Errorf("liveReload false: adding agents and users left checksum/config as it was")
	}

	r := mustRender(t, "kas", "kas", "default", kasValues)
	c := container(r.one(t, "Deployment"))
	var file string
	for _, a := range args(c) {
		if f, ok := strings.CutPrefix(a, "--config="); ok {
			file = f
		}
	}
	mounted := false
	for _, m := range list(c, "volumeMounts") {
		if str(m, "name") == "config" {
			mounted = str(m, "subPath") == "" && file == strings.TrimSuffix(str(m, "mountPath"), "/")+"/config.yaml"
		}
	}
	if !mounted {
		t.Errorf("--config=%s: want config.yaml in the config volume mounted as a directory (no subPath), so kubelet's updates reach kas: %v", file, get(c, "volumeMounts"))
	}
	// The ConfigMap still holds the whole config.
	if cm := str(r.one(t, "ConfigMap"), "data", "config.yaml"); !strings.Contains(cm, "alice") || !strings.Contains(cm, "production") {
		t.Errorf("ConfigMap config.yaml lacks agents[] or users[]:\n%s", cm)
	}
}

func TestKasServiceMonitor(t *testing.T) {
	ns := namespace(t)
	r := mustRender(t, "kas", "kas", ns, "serviceMonitor: {enabled: true}")
	sm := r.one(t, "ServiceMonitor")
	if str(sm, "spec", "endpoints", 0, "port") != "observability" {
		t.Errorf("ServiceMonitor endpoints %v", get(sm, "spec", "endpoints"))
	}
	// It selects the observability Service, not the agent Service.
	_, obs := kasServices(t, r)
	sel, _ := get(sm, "spec", "selector", "matchLabels").(map[string]any)
	for k, v := range sel {
		if str(obs, "metadata", "labels", k) != fmt.Sprint(v) {
			t.Errorf("ServiceMonitor selects %s=%v, which the observability Service lacks", k, v)
		}
	}
	if get(sm, "spec", "selector", "matchLabels", "kubetunnel.io/service") != "observability" {
		t.Errorf("ServiceMonitor selector %v would also match the agent Service", get(sm, "spec", "selector"))
	}
	ensureServiceMonitorCRD(t)
	dryRunApply(t, r)
}

func TestKasInvalidValues(t *testing.T) {
	for _, c := range []struct {
		name, values, want string
	}{
		{"replicas", "replicas: 2", "need Redis"},
		{"redis without a secret", "config: {redis: {address: redis:6379}}", "privateAPI.secretName"},
		{"private_api without redis", "config: {private_api: {server_name: kas}}", "need config.redis"},
		{"shared RWO cache", "{replicas: 2, privateAPI: {secretName: s}, config: {redis: {address: 'redis:6379'}}, gitCache: {persistence: {enabled: true}}}", "ReadWriteOnce"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := renderChart("kas", "kas", "default", c.values)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("render error %v, want one containing %q", err, c.want)
			}
		})
	}
	// Keys kas does not know are kas's errors: ParseConfig names them.
	r := mustRender(t, "kas", "kas", "default", "config: {agent: {listen: {websocket: true, max_conection_age: 1h}}}")
	_, err := kas.ParseConfig([]byte(str(r.one(t, "ConfigMap"), "data", "config.yaml")))
	if err == nil || !strings.Contains(err.Error(), "max_conection_age") {
		t.Errorf("ParseConfig of a misspelt key: %v", err)
	}
}
