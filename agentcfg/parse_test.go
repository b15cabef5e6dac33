package agentcfg

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const configProject = "group/agents"

func ptr[T any](v T) *T { return &v }

func defaultProject(id string) ManifestProject {
	return ManifestProject{
		ID:                     id,
		DefaultNamespace:       DefaultNamespace,
		Paths:                  []Path{{Glob: DefaultGlob}},
		ReconcileTimeout:       Duration{DefaultReconcileTimeout},
		DryRunStrategy:         DefaultDryRunStrategy,
		Prune:                  ptr(DefaultPrune),
		PruneTimeout:           Duration{DefaultPruneTimeout},
		PrunePropagationPolicy: DefaultPrunePropagationPolicy,
		InventoryPolicy:        DefaultInventoryPolicy,
	}
}

func defaultConfig(projects ...ManifestProject) *Config {
	return &Config{
		GitOps:        GitOps{ManifestProjects: projects},
		UserAccess:    UserAccess{AccessAs: AccessAs{Agent: &AccessAsAgent{}}},
		Observability: Observability{Logging: Logging{Level: DefaultLogLevel}},
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want *Config
	}{
		{name: "empty file", in: "", want: defaultConfig()},
		{name: "comments only", in: "# nothing yet\n", want: defaultConfig()},
		{name: "null document", in: "~\n", want: defaultConfig()},
		{name: "empty sections", in: "gitops:\nuser_access:\nobservability:\n", want: defaultConfig()},
		{
			name: "project without id uses the config project",
			in:   "gitops:\n  manifest_projects:\n  - paths: []\n",
			want: defaultConfig(defaultProject(configProject)),
		},
		{
			name: "every key",
			in: `gitops:
  manifest_projects:
  - id: group/deployments
    ref: {branch: main}
    default_namespace: apps
    paths:
    - glob: '/manifests/**/*.yaml'
    - glob: '/crds/*.yaml'
    reconcile_timeout: 90s
    dry_run_strategy: server
    prune: false
    prune_timeout: 1h30m
    prune_propagation_policy: orphan
    inventory_policy: adopt_all
    resource_inclusions: [{api_groups: ['*'], kinds: ['*']}]
    resource_exclusions:
    - api_groups: ['']
      kinds: [Secret]
  - id: group/other
    ref: {commit: 0123456789abcdef0123456789abcdef01234567}
user_access:
  access_as: {user: {}}
observability:
  logging:
    level: debug
`,
			want: &Config{
				GitOps: GitOps{ManifestProjects: []ManifestProject{
					{
						ID:                     "group/deployments",
						Ref:                    Ref{Branch: "main"},
						DefaultNamespace:       "apps",
						Paths:                  []Path{{Glob: "/manifests/**/*.yaml"}, {Glob: "/crds/*.yaml"}},
						ReconcileTimeout:       Duration{90 * time.Second},
						DryRunStrategy:         DryRunServer,
						Prune:                  ptr(false),
						PruneTimeout:           Duration{90 * time.Minute},
						PrunePropagationPolicy: PropagationOrphan,
						InventoryPolicy:        InventoryAdoptAll,
						ResourceInclusions:     []ResourceFilter{{APIGroups: []string{"*"}, Kinds: []string{"*"}}},
						ResourceExclusions:     []ResourceFilter{{APIGroups: []string{""}, Kinds: []string{"Secret"}}},
					},
					func() ManifestProject {
						p := defaultProject("group/other")
						p.Ref.Commit = "0123456789abcdef0123456789abcdef01234567"
						return p
					}(),
				}},
				UserAccess:    UserAccess{AccessAs: AccessAs{User: &AccessAsUser{}}},
				Observability: Observability{Logging: Logging{Level: LogDebug}},
			},
		},
		{
			name: "anchors and merge keys",
			in: `gitops:
  manifest_projects:
  - &base
    id: group/a
    prune: false
  - <<: *base
    default_namespace: b
`,
			want: func() *Config {
				a, b := defaultProject("group/a"), defaultProject("group/a")
				a.Prune, b.Prune = ptr(false), ptr(false)
				b.DefaultNamespace = "b"
				return defaultConfig(a, b)
			}(),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in), configProject)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// The messages are the user interface of a config file: they must name the
// line and key, and say what to write instead.
func TestParseErrors(t *testing.T) {
	topKeys := "ci_access, cilium, container_scanning, flux, gitops, observability, remote_development, starboard, user_access"
	projectKeys := "allow_empty, default_namespace, dry_run_strategy, id, inventory_policy, name, paths, pre_check, prune, prune_propagation_policy, prune_timeout, reconcile_timeout, ref, resource_exclusions, resource_inclusions, service_account"
	for _, tc := range []struct {
		name string
		in   string
		want []string // one line per problem
	}{
		{
			name: "unknown key in a manifest project",
			in: `gitops:
  manifest_projects:
  - id: group/a
    prunee: false
`,
			want: []string{`config.yaml: line 4: unknown key "prunee" in gitops.manifest_projects[0] (did you mean prune?); known keys: ` + projectKeys},
		},
		{
			// The example in README.md.
			name: "unknown key in gitops",
			in:   "gitops:\n  manifest_projectz: []\n",
			want: []string{`config.yaml: line 2: unknown key "manifest_projectz" in gitops (did you mean manifest_projects?); known keys: charts, manifest_projects`},
		},
		{
			name: "unknown top-level key",
			in:   "ci_acess: {}\n",
			want: []string{`config.yaml: line 1: unknown key "ci_acess" in the top level (did you mean ci_access?); known keys: ` + topKeys},
		},
		{
			name: "duplicate key",
			in:   "observability:\n  logging: {level: info}\nobservability: {}\n",
			want: []string{`config.yaml: line 3: duplicate key "observability" in the top level (first at line 1): keep one`},
		},
		{
			name: "section is a list",
			in:   "gitops: []\n",
			want: []string{`config.yaml: line 1: gitops: must be a mapping of keys to values, got a list`},
		},
		{
			name: "list is a mapping",
			in:   "gitops:\n  manifest_projects: {id: a}\n",
			want: []string{`config.yaml: line 2: gitops.manifest_projects: must be a list, got a mapping`},
		},
		{
			name: "string is a list",
			in:   "gitops:\n  manifest_projects:\n  - id: [a]\n",
			want: []string{`config.yaml: line 3: gitops.manifest_projects[0].id: must be a single value, got a list`},
		},
		{
			name: "bool as yes",
			in:   "gitops:\n  manifest_projects:\n  - prune: yes\n",
			want: []string{`config.yaml: line 3: gitops.manifest_projects[0].prune: must be true or false, got "yes"`},
		},
		{
			name: "duration without unit",
			in:   "gitops:\n  manifest_projects:\n  - reconcile_timeout: 3600\n",
			want: []string{`config.yaml: line 3: gitops.manifest_projects[0].reconcile_timeout: 3600 has no unit: write 3600s for seconds`},
		},
		{
			name: "duration typo",
			in:   "gitops:\n  manifest_projects:\n  - prune_timeout: 1hour\n",
			want: []string{`config.yaml: line 3: gitops.manifest_projects[0].prune_timeout: "1hour" is not a duration: write a number with a unit such as 3600s or 1h`},
		},
		{
			name: "negative duration",
			in:   "gitops:\n  manifest_projects:\n  - prune_timeout: -5s\n",
			want: []string{`config.yaml: line 3: gitops.manifest_projects[0].prune_timeout: -5s is not a positive duration: use e.g. 3600s`},
		},
		{
			name: "bad enum in the second project",
			in: `gitops:
  manifest_projects:
  - id: a
  - id: b
    inventory_policy: adopt
`,
			want: []string{`config.yaml: line 5: gitops.manifest_projects[1].inventory_policy: "adopt" is not one of must_match, adopt_if_no_inventory, adopt_all`},
		},
		{
			name: "two refs",
			in:   "gitops:\n  manifest_projects:\n  - ref:\n      branch: main\n      tag: v1\n",
			want: []string{`config.yaml: line 3: gitops.manifest_projects[0].ref: set only one of branch, tag, commit (found branch, tag)`},
		},
		{
			name: "short commit",
			in:   "gitops:\n  manifest_projects:\n  - ref: {commit: abc123}\n",
			want: []string{`config.yaml: line 3: gitops.manifest_projects[0].ref.commit: "abc123" is not a full commit SHA: use all 40 hex digits, lower case`},
		},
		{
			name: "bad namespace and glob",
			in:   "gitops:\n  manifest_projects:\n  - default_namespace: Prod\n    paths:\n    - glob: '/a/{b'\n",
			want: []string{
				`config.yaml: line 3: gitops.manifest_projects[0].default_namespace: "Prod" is not a namespace name: use at most 63 lower case letters, digits and '-', starting and ending with a letter or digit`,
				`config.yaml: line 5: gitops.manifest_projects[0].paths[0].glob: "/a/{b" is not a valid glob: check its brackets and braces`,
			},
		},
		{
			name: "same project twice",
			in:   "gitops:\n  manifest_projects:\n  - id: a\n  - id: a\n",
			want: []string{`config.yaml: line 4: gitops.manifest_projects[1]: same id and default_namespace as gitops.manifest_projects[0]: merge their paths into one entry`},
		},
		{
			name: "both access modes",
			in:   "user_access:\n  access_as: {agent: {}, user: {}}\n",
			want: []string{`config.yaml: line 2: user_access.access_as: set only one of agent, user`},
		},
		{
			name: "access mode without braces",
			in:   "user_access:\n  access_as:\n    user:\n",
			want: []string{`config.yaml: line 3: user_access.access_as.user: empty value: write user: {}`},
		},
		{
			name: "unknown key in an empty struct",
			in:   "user_access:\n  access_as:\n    agent: {impersonate: true}\n",
			want: []string{`config.yaml: line 3: unknown key "impersonate" in user_access.access_as.agent; known keys: none, write {}`},
		},
		{
			name: "log level",
			in:   "observability:\n  logging:\n    level: verbose\n",
			want: []string{`config.yaml: line 3: observability.logging.level: "verbose" is not one of debug, info, warn, error`},
		},
		{
			name: "not a mapping",
			in:   "hello\n",
			want: []string{`config.yaml: line 1: must be a mapping of keys to values, got "hello"`},
		},
		{
			name: "syntax error",
			in:   "gitops:\n  manifest_projects:\n  - id: a\n   prune: true\n",
			want: []string{`config.yaml: line 1: invalid YAML: did not find expected key (in the block that starts on this line: check the indentation and brackets below it)`},
		},
		{
			name: "empty list item",
			in:   "gitops:\n  manifest_projects:\n  -\n",
			want: []string{`config.yaml: line 3: gitops.manifest_projects[0]: empty list item: remove the '-' or give it a value`},
		},
		{
			name: "tab",
			in:   "gitops:\n\tmanifest_projects: []\n",
			want: []string{`config.yaml: line 2: invalid YAML: found character that cannot start any token (indent with spaces, not tabs)`},
		},
		{
			name: "alias inside itself",
			in:   "gitops: &g\n  <<: *g\n",
			want: []string{`config.yaml: line 2: gitops: alias *g is inside the value it refers to`},
		},
		{
			name: "second document",
			in:   "gitops: {}\n---\nobservability: {}\n",
			want: []string{`config.yaml: line 2: a second YAML document (after ---): a config file holds one document, remove the --- line`},
		},
		{
			name: "all shape problems at once",
			in:   "gitopz: {}\nobservability:\n  logging:\n    levle: info\n",
			want: []string{
				`config.yaml: line 1: unknown key "gitopz" in the top level (did you mean gitops?); known keys: ` + topKeys,
				`config.yaml: line 4: unknown key "levle" in observability.logging (did you mean level?); known keys: grpc_level, level`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.in), configProject)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", cfg)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("error:\n got %s\nwant %s", got, want)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != FileName {
				t.Errorf("error %#v is not an *Error for %s", err, FileName)
			}
		})
	}
}

func TestParseErrorFields(t *testing.T) {
	_, err := Parse([]byte("gitops:\n  manifest_projects:\n  - dry_run_strategy: always\n"), configProject)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("not an *Error: %v", err)
	}
	if e.Line != 3 || e.Path != "gitops.manifest_projects[0].dry_run_strategy" {
		t.Errorf("got line %d path %q, want line 3 path gitops.manifest_projects[0].dry_run_strategy", e.Line, e.Path)
	}
}

func TestParseCapsErrors(t *testing.T) {
	var b strings.Builder
	for i := range maxErrors + 5 {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i+1))
		b.WriteString(": 1\n")
	}
	_, err := Parse([]byte(b.String()), configProject)
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != "config.yaml: and 5 more problems" {
		t.Errorf("got %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestDefaultIsIdempotent(t *testing.T) {
	cfg, err := Parse([]byte("gitops:\n  manifest_projects:\n  - id: a\n"), configProject)
	if err != nil {
		t.Fatal(err)
	}
	again := *cfg
	again.GitOps.ManifestProjects = append([]ManifestProject(nil), cfg.GitOps.ManifestProjects...)
	again.Default("other")
	if !reflect.DeepEqual(&again, cfg) {
		t.Errorf("Default changed a defaulted config:\n got %+v\nwant %+v", &again, cfg)
	}
}

func TestValidateWithoutDefaults(t *testing.T) {
	err := (&Config{GitOps: GitOps{ManifestProjects: []ManifestProject{{}}}}).Validate()
	if err == nil {
		t.Fatal("Validate accepted a config that was not defaulted")
	}
	for _, want := range []string{
		"gitops.manifest_projects[0].id: required",
		"gitops.manifest_projects[0].prune: required",
		"user_access.access_as: set one of agent: {}, user: {}",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestUnknownKeyPath(t *testing.T) {
	_, err := Parse([]byte("gitops:\n  manifest_projects:\n  - prunee: true\n"), configProject)
	var e *Error
	if !errors.As(err, &e) || e.Line != 3 || e.Path != "gitops.manifest_projects[0].prunee" {
		t.Fatalf("got %#v", e)
	}
}

// The wire JSON uses the config.yaml key names, so one name means one key
// everywhere (logs, errors, docs).
func TestYAMLAndJSONNamesMatch(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var check func(t reflect.Type)
	check = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[Duration]() || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			y, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			j, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if y == "-" || j == "-" {
				continue // only in the file (sections agentk does not read), or only on the wire
			}
			if y == "" || y != j {
				t.Errorf("%s.%s: yaml name %q, json name %q", typ.Name(), f.Name, y, j)
			}
			check(f.Type)
		}
	}
	check(reflect.TypeFor[Config]())
}

func TestParseNamed(t *testing.T) {
	_, err := ParseNamed(".gitlab/agents/prod/config.yaml", []byte("gitops: []\n"), configProject)
	want := ".gitlab/agents/prod/config.yaml: line 1: gitops: must be a mapping of keys to values, got a list"
	if err == nil || err.Error() != want {
		t.Errorf("ParseNamed: %v, want %s", err, want)
	}
}
