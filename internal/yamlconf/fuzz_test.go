package yamlconf

import (
	"bytes"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzDecode checks that Decode never panics, that every problem it reports
// is an *Error that points into the file, and that what it accepts survives
// being written out and read again.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"",
		"name: a\nagents:\n- name: x\n  port: 80\n  projects: [{id: p, prune: false}]\n",
		"agents:\n- &a {name: x}\n- <<: *a\n  port: 1\n",
		"limits: &l {<<: *l}\n",
		"a: &a [*a]\n",
		"timeout: 30\nsize: 300\nratio: x\n",
		"legacy: {cadence: daily}\nfree: {x: [1, {y: z}]}\n",
		"name: a\n---\nname: b\n",
		"--- \n...\n---\nname: c\n",
		"!!binary name: 1\n",
		"labels: {a: b, a: c}\nextra: e\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg testConfig
		_, err := Decode(data, &cfg, Options{File: "f.yaml", IgnoredTag: "test", MaxNodes: 10_000})
		if err != nil {
			// YAML breaks lines at \n, \r and \r\n; yaml may point just past the end.
			lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) + 2
			for _, e := range Errors(err) {
				if e.File != "f.yaml" || e.Line < 0 || e.Line > lines {
					t.Fatalf("error %q: file %q line %d of %d", e, e.File, e.Line, lines)
				}
			}
			if len(Errors(err)) == 0 {
				t.Fatalf("error %q is not an *Error", err)
			}
			return
		}
		cfg.Free = nil // free-form values do not keep their types through YAML
		out, err := yaml.Marshal(&cfg)
		if err != nil {
			t.Fatalf("Marshal %+v: %v", cfg, err)
		}
		var again testConfig
		if _, err := Decode(out, &again, Options{IgnoredTag: "test"}); err != nil {
			t.Fatalf("decoding what was accepted and written out:\n%s\n%v", out, err)
		}
		// Compared as YAML: nil and empty lists read back alike.
		if out2, err := yaml.Marshal(&again); err != nil || !bytes.Equal(out2, out) {
			t.Fatalf("round trip:\n got %s\nwant %s (%v)", out2, out, err)
		}
	})
}
