// Package docs checks the documentation against the code.
package docs

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"kubetunnel/agentcfg"
	"kubetunnel/kas"
)

var update = flag.Bool("update", false, "rewrite docs/config-reference.md from the config structs and the import diagram of docs/architecture.md from go list")

const referencePath = "../../docs/config-reference.md"

// row is one key of a config file.
type row struct{ key, typ, def string }

// walk lists every key of v's type (yaml tags), with the value v holds as
// the default.
func walk(prefix string, v reflect.Value, t reflect.Type, rows *[]row) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		if v.IsValid() && !v.IsNil() {
			v = v.Elem()
		} else {
			v = reflect.Value{}
		}
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeOf(time.Duration(0)) || t == reflect.TypeOf(agentcfg.Duration{}) {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := strings.TrimPrefix(prefix+"."+tag, ".")
		if f.Tag.Get("agentcfg") == "ignored" {
			// GitLab's keys that are accepted but have no effect here.
			*rows = append(*rows, row{key, "GitLab's: accepted, not implemented ([compatibility](compatibility.md))", ""})
			continue
		}
		var fv reflect.Value
		if v.IsValid() {
			fv = v.Field(i)
		}
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Slice && elem(ft).Kind() == reflect.Struct:
			*rows = append(*rows, row{key, "list", ""})
			var ev reflect.Value
			if fv.IsValid() && fv.Len() > 0 {
				ev = fv.Index(0)
			}
			walk(key+"[]", ev, ft.Elem(), rows)
		case elem(ft).Kind() == reflect.Struct && elem(ft).NumField() == 0:
			// A key whose presence is the setting, like access_as: {agent: {}}.
			def := ""
			if fv.IsValid() && fv.Kind() == reflect.Pointer && !fv.IsNil() {
				def = "{}"
			}
			*rows = append(*rows, row{key, "object, set as {}", def})
		case elem(ft).Kind() == reflect.Struct && ft != reflect.TypeOf(agentcfg.Duration{}):
			walk(key, fv, ft, rows)
		default:
			*rows = append(*rows, row{key, typeName(ft), value(fv)})
		}
	}
}

func elem(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)) || t == reflect.TypeOf(agentcfg.Duration{}):
		return "duration"
	case t.Kind() == reflect.Pointer:
		return typeName(t.Elem())
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	default:
		return t.Kind().String()
	}
}

func value(v reflect.Value) string {
	if !v.IsValid() {
		return ""
	}
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if d, ok := v.Interface().(agentcfg.Duration); ok {
		return d.Duration.String()
	}
	if v.IsZero() {
		return ""
	}
	return fmt.Sprint(v.Interface())
}

func table(title, intro string, rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n%s\n\n| key | type | default |\n|---|---|---|\n", title, intro)
	for _, r := range rows {
		def := r.def
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", r.key, r.typ, def)
	}
	return b.String()
}

func reference() string {
	var kasRows, agentRows []row
	// The optional sections are listed with their defaults.
	kc := &kas.Config{Redis: &kas.RedisSection{}, PrivateAPI: &kas.PrivateAPISection{}}
	kc.Default()
	walk("", reflect.ValueOf(kc), reflect.TypeOf(kc), &kasRows)
	ac := &agentcfg.Config{GitOps: agentcfg.GitOps{ManifestProjects: []agentcfg.ManifestProject{{}}}}
	ac.Default("<config project>")
	walk("", reflect.ValueOf(ac), reflect.TypeOf(ac), &agentRows)
	return "# Configuration reference\n\n" +
		"Every key of both config files, with its type and default, generated from the config structs\n" +
		"(`make docs` rewrites this file; `make test` fails when it is out of date).\n" +
		"What each key does: the README's kas config table, and docs/gitops.md for `gitops`.\n\n" +
		table("kas config (`kas --config FILE`)", "Unknown keys are an error that names the key and its line.", kasRows) + "\n" +
		table("Agent config (`.gitlab/agents/<name>/config.yaml`)", "Defaults of `gitops.manifest_projects[]` apply to each project.", agentRows)
}

// The configuration reference lists every key of the config structs, with
// the types and defaults the code really has.
func TestConfigReferenceUpToDate(t *testing.T) {
	want := reference()
	if *update {
		if err := os.WriteFile(referencePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("docs/config-reference.md is out of date with the config structs: run make docs")
	}
}
