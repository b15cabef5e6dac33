package agentcfg

import (
	"reflect"
	"strings"
	"testing"
)

func TestJSONRoundTrip(t *testing.T) {
	cfg, err := Parse([]byte(`gitops:
  manifest_projects:
  - id: a
    ref: {tag: v1}
    prune: false
    reconcile_timeout: 90s
    resource_exclusions: [{api_groups: [''], kinds: [Secret]}]
user_access:
  access_as: {user: {}}
`), configProject)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cfg.ToJSON()
	if err != nil {
		t.Fatal(err)
	}
	// Durations travel as strings, like in config.yaml.
	if !strings.Contains(string(b), `"reconcile_timeout":"1m30s"`) {
		t.Errorf("JSON %s lacks the duration string", b)
	}
	got, err := FromJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, cfg)
	}
}

func TestFromJSON(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "empty object", in: `{}`},
		{name: "unknown field from a newer kas", in: `{"gitops":{"manifest_projects":[{"id":"a","new_thing":1}]},"future":{}}`},
		{name: "missing field from an older kas", in: `{"gitops":{"manifest_projects":[{"id":"a"}]}}`},
		{name: "not JSON", in: `gitops: {}`, wantErr: "decode agent configuration: invalid character"},
		{name: "duration as number", in: `{"gitops":{"manifest_projects":[{"id":"a","prune_timeout":5}]}}`, wantErr: `duration must be a string such as "3600s"`},
		{name: "invalid value", in: `{"observability":{"logging":{"level":"loud"}}}`, wantErr: `agent configuration from kas: observability.logging.level: "loud" is not one of debug, info, warn, error`},
		{name: "project without id", in: `{"gitops":{"manifest_projects":[{}]}}`, wantErr: "gitops.manifest_projects[0].id: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromJSON([]byte(tc.in))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("FromJSON: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("FromJSON error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
