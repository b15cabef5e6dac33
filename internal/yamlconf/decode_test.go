package yamlconf

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Name       string            `yaml:"name"`
	Agents     []testAgent       `yaml:"agents"`
	Limits     *testLimits       `yaml:"limits,omitempty"`
	Timeout    time.Duration     `yaml:"timeout"`
	Labels     map[string]string `yaml:"labels"`
	Legacy     testLegacy        `yaml:"legacy" test:"ignored"`
	Free       any               `yaml:"free"`
	Ratio      float64           `yaml:"ratio"`
	Size       uint8             `yaml:"size"`
	Skipped    string            `yaml:"-"`
	testInline `yaml:",inline"`
}

type testInline struct {
	Extra string `yaml:"extra"`
}

type testAgent struct {
	Name     string        `yaml:"name"`
	Port     int16         `yaml:"port"`
	Projects []testProject `yaml:"projects"`
}

type testProject struct {
	ID    string `yaml:"id"`
	Prune *bool  `yaml:"prune"`
}

type testLimits struct {
	Max int `yaml:"max"`
}

type testLegacy struct {
	Cadence string `yaml:"cadence"`
}

const (
	topKeys     = "agents, extra, free, labels, legacy, limits, name, ratio, size, timeout"
	agentKeys   = "name, port, projects"
	projectKeys = "id, prune"
)

func decode(in string, opts Options) (*testConfig, *Result, error) {
	opts.IgnoredTag = "test"
	cfg := &testConfig{Name: "preset"}
	res, err := Decode([]byte(in), cfg, opts)
	return cfg, res, err
}

func TestDecodeValid(t *testing.T) {
	f := false
	for _, tc := range []struct {
		name string
		in   string
		want testConfig
	}{
		{name: "empty", in: "", want: testConfig{Name: "preset"}},
		{name: "comments only", in: "# nothing\n", want: testConfig{Name: "preset"}},
		{name: "null document", in: "~\n", want: testConfig{Name: "preset"}},
		{
			name: "merge key in a map",
			in:   "free: &n {a: b}\nlabels: {<<: *n, c: d}\n",
			want: testConfig{Name: "preset", Free: map[string]any{"a": "b"}, Labels: map[string]string{"a": "b", "c": "d"}},
		},
		{name: "zero duration needs a unit too", in: "timeout: 0s\n", want: testConfig{Name: "preset"}},
		{name: "null section without NullSectionIsError", in: "limits:\n", want: testConfig{Name: "preset"}},
		{name: "null section without NullSectionIsError", in: "limits: null\n", want: testConfig{Name: "preset"}},
		{name: "trailing document marker", in: "name: a\n---\n", want: testConfig{Name: "a"}},
		{
			name: "every kind",
			in: `name: kas
agents:
- name: a
  port: 8080
  projects: [{id: x, prune: false}]
limits: {max: 3}
timeout: 1m30s
labels: {app: kas}
free: {any: [thing, 1]}
ratio: 0.5
size: 0xff
extra: inline
`,
			want: testConfig{
				Name:       "kas",
				Agents:     []testAgent{{Name: "a", Port: 8080, Projects: []testProject{{ID: "x", Prune: &f}}}},
				Limits:     &testLimits{Max: 3},
				Timeout:    90 * time.Second,
				Labels:     map[string]string{"app": "kas"},
				Free:       map[string]any{"any": []any{"thing", 1}},
				Ratio:      0.5,
				Size:       255,
				testInline: testInline{Extra: "inline"},
			},
		},
		{
			name: "anchors, aliases and merge keys",
			in: `agents:
- &base
  name: a
  projects: &p [{id: x}]
- <<: *base
  name: b
- name: c
  projects: *p
`,
			want: testConfig{Name: "preset", Agents: []testAgent{
				{Name: "a", Projects: []testProject{{ID: "x"}}},
				{Name: "b", Projects: []testProject{{ID: "x"}}},
				{Name: "c", Projects: []testProject{{ID: "x"}}},
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := decode(tc.in, Options{})
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("Decode:\n got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

// The messages are the user interface of a config file: each names the
// file, line and key path, and says what to write instead.
func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		want     []string // one line per problem
		wantPath string   // of the first problem
	}{
		{
			name:     "unknown key at depth",
			in:       "agents:\n- name: a\n  projects:\n  - id: x\n    prunee: true\n",
			want:     []string{`kas.yaml: line 5: unknown key "prunee" in agents[0].projects[0] (did you mean prune?); known keys: ` + projectKeys},
			wantPath: "agents[0].projects[0].prunee",
		},
		{
			name:     "unknown key in a later list item",
			in:       "agents:\n- name: a\n- name: b\n  projects:\n  - {id: x}\n  - {identifier: y}\n",
			want:     []string{`kas.yaml: line 6: unknown key "identifier" in agents[1].projects[1]; known keys: ` + projectKeys},
			wantPath: "agents[1].projects[1].identifier",
		},
		{
			name:     "unknown top-level key",
			in:       "agentz: []\n",
			want:     []string{`kas.yaml: line 1: unknown key "agentz" in the top level (did you mean agents?); known keys: ` + topKeys},
			wantPath: "agentz",
		},
		{
			name:     "a key cut short",
			in:       "limits: {ma: 1}\nagents: [{proj: []}]\n",
			want:     []string{`kas.yaml: line 1: unknown key "ma" in limits (did you mean max?); known keys: max`, `kas.yaml: line 2: unknown key "proj" in agents[0] (did you mean projects?); known keys: ` + agentKeys},
			wantPath: "limits.ma",
		},
		{
			name:     "list is a mapping",
			in:       "agents:\n- projects: {id: a}\n",
			want:     []string{`kas.yaml: line 2: agents[0].projects: must be a list, got a mapping`},
			wantPath: "agents[0].projects",
		},
		{
			name:     "section is a list",
			in:       "limits: [1]\n",
			want:     []string{`kas.yaml: line 1: limits: must be a mapping of keys to values, got a list`},
			wantPath: "limits",
		},
		{
			name: "scalar type mismatches",
			in:   "name: [a]\nagents:\n- port: eighty\n- port: 70000\n  projects: [{prune: yes}]\nratio: high\nsize: -1\nlabels: {a: {b: c}}\n",
			want: []string{
				`kas.yaml: line 1: name: must be a single value, got a list`,
				`kas.yaml: line 3: agents[0].port: must be a whole number, got "eighty"`,
				`kas.yaml: line 4: agents[1].port: 70000 is out of range (-32768 to 32767)`,
				`kas.yaml: line 5: agents[1].projects[0].prune: must be true or false, got "yes"`,
				`kas.yaml: line 6: ratio: must be a number, got "high"`,
				`kas.yaml: line 7: size: -1 is out of range (0 to 255)`,
				`kas.yaml: line 8: labels.a: must be a single value, got a mapping`,
			},
			wantPath: "name",
		},
		{
			name:     "duration without unit",
			in:       "timeout: 30\n",
			want:     []string{`kas.yaml: line 1: timeout: 30 has no unit: write 30s for seconds`},
			wantPath: "timeout",
		},
		{
			name:     "duration typo",
			in:       "timeout: 1hour\n",
			want:     []string{`kas.yaml: line 1: timeout: "1hour" is not a duration: write a number with a unit such as 30s or 1h`},
			wantPath: "timeout",
		},
		{
			name: "duplicate keys",
			in:   "name: a\nagents:\n- name: x\n  name: y\nname: b\nlabels: {k: 1, k: 2}\n",
			want: []string{
				`kas.yaml: line 4: duplicate key "name" in agents[0] (first at line 3): keep one`,
				`kas.yaml: line 5: duplicate key "name" in the top level (first at line 1): keep one`,
				`kas.yaml: line 6: duplicate key "k" in labels (first at line 6): keep one`,
			},
		},
		{
			name:     "empty section that must be present",
			in:       "limits:\n",
			want:     []string{`kas.yaml: line 1: limits: empty value: write limits: {}`},
			wantPath: "limits",
		},
		{
			name:     "empty list item",
			in:       "agents:\n-\n",
			want:     []string{`kas.yaml: line 2: agents[0]: empty list item: remove the '-' or give it a value`},
			wantPath: "agents[0]",
		},
		{
			name: "second document",
			in:   "name: a\n---\nname: b\n",
			want: []string{`kas.yaml: line 2: a second YAML document (after ---): a config file holds one document, remove the --- line`},
		},
		{
			name: "not a mapping",
			in:   "hello\n",
			want: []string{`kas.yaml: line 1: must be a mapping of keys to values, got "hello"`},
		},
		{
			name: "syntax error",
			in:   "agents:\n- name: a\n  port: 1\n port: 2\n",
			want: []string{`kas.yaml: line 3: invalid YAML: did not find expected key (in the block that starts on this line: check the indentation and brackets below it)`},
		},
		{
			name: "tab",
			in:   "limits:\n\tmax: 1\n",
			want: []string{`kas.yaml: line 2: invalid YAML: found character that cannot start any token (indent with spaces, not tabs)`},
		},
		{
			name: "unknown anchor",
			in:   "agents: *nope\n",
			// yaml.v3 gives no line for this one.
			want: []string{`kas.yaml: invalid YAML: unknown anchor 'nope' referenced`},
		},
		{
			name:     "alias inside itself",
			in:       "limits: &l\n  <<: *l\n",
			want:     []string{`kas.yaml: line 2: limits: alias *l is inside the value it refers to`},
			wantPath: "limits",
		},
		{
			name:     "alias to a value of the wrong kind",
			in:       "name: &n x\nagents: *n\n",
			want:     []string{`kas.yaml: line 1: agents: must be a list, got "x"`},
			wantPath: "agents",
		},
		{
			name:     "unknown key inside an ignored section",
			in:       "legacy: {cadense: daily}\n",
			want:     []string{`kas.yaml: line 1: unknown key "cadense" in legacy (did you mean cadence?); known keys: cadence`},
			wantPath: "legacy.cadense",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := decode(tc.in, Options{File: "kas.yaml", NullSectionIsError: true})
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", cfg)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("error:\n got %s\nwant %s", got, want)
			}
			errs := Errors(err)
			if len(errs) != len(tc.want) {
				t.Fatalf("%d *Error in %v, want %d", len(errs), err, len(tc.want))
			}
			if errs[0].File != "kas.yaml" || (errs[0].Line == 0) == strings.HasPrefix(tc.want[0], "kas.yaml: line ") || errs[0].Path != tc.wantPath {
				t.Errorf("first error: file %q line %d path %q, want kas.yaml, a line, path %q", errs[0].File, errs[0].Line, errs[0].Path, tc.wantPath)
			}
			if cfg.Name != "preset" {
				t.Errorf("a refused file changed the config: %+v", cfg)
			}
		})
	}
}

func TestDecodeWithoutFileName(t *testing.T) {
	_, _, err := decode("limits: {maxx: 1}\n", Options{})
	want := `line 1: unknown key "maxx" in limits (did you mean max?); known keys: max`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func TestDecodeIgnored(t *testing.T) {
	cfg, res, err := decode("legacy:\n  cadence: daily\nname: a\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Ignored, []string{"legacy"}) || cfg.Legacy.Cadence != "daily" {
		t.Errorf("Ignored %q, legacy %+v", res.Ignored, cfg.Legacy)
	}
	// Without the tag option the same field is an ordinary key.
	res, err = Decode([]byte("legacy: {cadence: daily}\n"), &testConfig{}, Options{})
	if err != nil || len(res.Ignored) != 0 {
		t.Errorf("without IgnoredTag: %v, ignored %q", err, res.Ignored)
	}
	// An empty ignored section sets nothing.
	_, res, err = decode("legacy:\n", Options{})
	if err != nil || len(res.Ignored) != 0 {
		t.Errorf("empty ignored section: %v, ignored %q", err, res.Ignored)
	}
}

// Validate's errors name a key path; Locate points them into the file,
// including keys the file does not set (at their closest parent).
func TestLocate(t *testing.T) {
	in := "name: a\nagents:\n- name: x\n- name: y\n  projects:\n  - id: p\n"
	cfg, res, err := decode(in, Options{File: "kas.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	validate := func(c *testConfig) error {
		return errors.Join(
			KeyError("agents[1].projects[0].id", "%q is not a repository", c.Agents[1].Projects[0].ID),
			KeyError("agents[0].port", "missing"),
			KeyError("limits.max", "must be positive"),
			fmt.Errorf("some other error"),
			fmt.Errorf("wrapped: %w", KeyError("name", "too short")),
		)
	}
	located := res.Locate(validate(cfg))
	got := located.Error()
	// fmt.Errorf's text is fixed when it is made; the *Error inside still
	// gets its place.
	if errs := Errors(located); len(errs) != 4 || errs[3].Line != 1 || errs[3].File != "kas.yaml" {
		t.Errorf("Errors after Locate: %+v", errs)
	}
	want := `kas.yaml: line 6: agents[1].projects[0].id: "p" is not a repository
kas.yaml: line 3: agents[0].port: missing
kas.yaml: limits.max: must be positive
some other error
wrapped: name: too short`
	if got != want {
		t.Errorf("Locate:\n got %s\nwant %s", got, want)
	}
	if l := res.Line("agents[1]"); l != 4 {
		t.Errorf("Line(agents[1]) = %d, want 4", l)
	}
	var nilRes *Result
	if e := KeyError("x", "bad"); nilRes.Locate(e) != e || e.Line != 0 {
		t.Errorf("nil Result changed the error: %+v", e)
	}
}

func TestJoinCaps(t *testing.T) {
	var b strings.Builder
	for i := range DefaultMaxErrors + 5 {
		fmt.Fprintf(&b, "k%s: 1\n", strings.Repeat("x", i+1))
	}
	_, _, err := decode(b.String(), Options{File: "f.yaml"})
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != DefaultMaxErrors+1 || lines[DefaultMaxErrors] != "f.yaml: and 5 more problems" {
		t.Errorf("got %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	_, _, err = decode(b.String(), Options{MaxErrors: 2})
	if n := len(strings.Split(err.Error(), "\n")); n != 3 {
		t.Errorf("MaxErrors 2: %d lines:\n%v", n, err)
	}
}

// Hostile input costs bounded work: a size limit, a node limit that counts
// aliases expanded, and yaml.v3's own alias and depth limits where the walk
// does not go (free-form values).
func TestDecodeBounded(t *testing.T) {
	// A billion laughs: ten levels of ten aliases each.
	var bomb strings.Builder
	bomb.WriteString("x0: &a0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&bomb, "x%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	// A thousand agents, each an alias of one with a thousand projects:
	// a million values to check from 15 KB.
	projects := "[" + strings.TrimSuffix(strings.Repeat("{id: a}, ", 1000), ", ") + "]"
	typedBomb := "agents:\n- &ag {name: a, projects: " + projects + "}\n" + strings.Repeat("- *ag\n", 1000)
	for _, tc := range []struct {
		name string
		in   string
		opts Options
		want string
	}{
		{
			name: "over MaxBytes",
			in:   "name: " + strings.Repeat("a", 2000) + "\n",
			opts: Options{MaxBytes: 1000},
			want: "the file is 2007 bytes, more than the 1000 a config file may have",
		},
		{
			name: "over DefaultMaxBytes",
			in:   "name: " + strings.Repeat("a", DefaultMaxBytes) + "\n",
			want: "more than the 4194304 a config file may have",
		},
		{
			name: "aliases expanded into typed lists",
			in:   typedBomb,
			want: "line 2: the file is too large or uses too many aliases (more than 100000 values)",
		},
		{
			name: "alias of a list where a value goes",
			in:   "free:\n" + indent(bomb.String()) + "name: *a9\n",
			want: "name: must be a single value, got a list",
		},
		{
			name: "alias bomb in a free-form field",
			in:   "free:\n" + indent(bomb.String()) + "  all: *a9\n",
			want: "excessive aliasing",
		},
		{
			name: "deep nesting",
			in:   "free: " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "\n",
			want: "exceeded max depth",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, _, err := decode(tc.in, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %.300v, want one containing %q", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

func TestDecodeNeedsPointer(t *testing.T) {
	if _, err := Decode([]byte("name: a\n"), testConfig{}, Options{}); err == nil {
		t.Error("Decode into a struct value succeeded")
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"id", "manifest_projects", "prune", "prune_timeout", "webhook_secret_file"}
	for key, want := range map[string]string{
		"prunee":            "prune",
		"purne":             "prune",
		"manifest_projectz": "manifest_projects",
		"webhook_secret":    "webhook_secret_file",
		"ib":                "id",
		"xy":                "",
		"timeout":           "",
		"manifest":          "manifest_projects",
		"completely_other":  "",
	} {
		if got := suggest(key, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
}
