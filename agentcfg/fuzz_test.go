package agentcfg

import (
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts
// survives the trip to agentk unchanged (the sections agentk does not
// read stay behind).
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"gitops:\n  manifest_projects:\n  - id: a\n    ref: {branch: main}\n    paths: [{glob: '/**/*.yaml'}]\n",
		"gitops:\n  manifest_projects:\n  - &a {id: x}\n  - <<: *a\n    default_namespace: y\n",
		"user_access:\n  access_as: {user: {}}\n",
		"observability: {logging: {level: debug}}\n",
		"gitops: {manifest_projects: [{prune_timeout: 3600, prune: yes}]}\n",
		"a: &a [*a]\n",
		"x: &x {<<: *x}\n",
		"--- \n...\n---\ngitops: {}\n",
		"!!binary gitops: 1\n",
		"ci_access:\n  projects:\n  - id: a\n    access_as: {impersonate: {username: u, extra: [{key: k, val: [v]}]}}\n",
		"remote_development: {labels: {a: b}, workspaces_quota: 3}\ngitops: {charts: [{values: [{inline: {x: [1]}}]}]}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, configProject)
		if err != nil {
			return
		}
		b, err := cfg.ToJSON()
		if err != nil {
			t.Fatalf("ToJSON of a parsed config: %v", err)
		}
		got, err := FromJSON(b)
		if err != nil {
			t.Fatalf("FromJSON of a parsed config %s: %v", b, err)
		}
		want := *cfg
		want.ContainerScanning, want.RemoteDevelopment, want.Flux = ContainerScanning{}, RemoteDevelopment{}, Flux{}
		want.Starboard, want.Cilium = ContainerScanning{}, Cilium{}
		want.GitOps.Charts = nil
		want.Observability.GoogleProfiler = GoogleProfiler{}
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, &want)
		}
	})
}
