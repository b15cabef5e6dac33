package yamlconf

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// walker walks the YAML tree alongside the Go type. It finds what yaml.v3
// reports badly or not at all: unknown keys (with the key path and the keys
// that are known), duplicate keys and values of the wrong kind, all of them
// rather than the first. It records the line of every key path.
type walker struct {
	opts   Options
	errs   []*Error
	lines  map[string]int
	visits int
	// ignored lists the key paths of fields tagged ignored that the file
	// sets, outermost only; inIgnored is set while walking inside one.
	ignored   []string
	inIgnored bool
	// following holds the alias targets being walked, to catch an alias
	// inside the value it names (yaml accepts "x: &x {<<: *x}").
	following map[*yaml.Node]bool
}

func (w *walker) fail(line int, path, format string, args ...any) {
	e := KeyError(path, format, args...)
	e.Line = line
	w.errs = append(w.errs, e)
}

func (w *walker) check(n *yaml.Node, t reflect.Type, path string) {
	w.visits++
	if w.visits == w.opts.MaxNodes {
		w.fail(n.Line, "", "the file is too large or uses too many aliases (more than %d values)", w.opts.MaxNodes)
	}
	if w.visits >= w.opts.MaxNodes {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, child := range n.Content {
			w.check(child, t, path)
		}
		return
	case yaml.AliasNode:
		w.followAlias(n, t, path)
		return
	case 0:
		return // an empty file or one with only comments
	}
	if _, ok := w.lines[path]; !ok {
		w.lines[path] = n.Line
	}
	if isNull(n) {
		// An empty value leaves the default (see Options.NullSectionIsError).
		if w.opts.NullSectionIsError && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct && !reflect.PointerTo(t.Elem()).Implements(unmarshalerType) {
			w.fail(n.Line, path, "empty value: write %s: {}", lastKey(path))
		}
		return
	}
	if t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(unmarshalerType) {
		// The type reads itself; its own error says what is wrong.
		if err := reflect.New(t).Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			w.fail(n.Line, path, "%s", err.Error())
		}
		return
	}
	if t == durationType {
		w.checkDuration(n, path)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.check(n, t.Elem(), path)
	case reflect.Struct:
		w.checkMapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n.Line, path, "must be a list, got %s", Describe(n))
			return
		}
		for i, item := range n.Content {
			ip := path + "[" + strconv.Itoa(i) + "]"
			if isNull(item) {
				// yaml.v3 drops or zeroes empty items: say so rather than
				// silently lose one.
				w.fail(item.Line, ip, "empty list item: remove the '-' or give it a value")
				continue
			}
			w.check(item, t.Elem(), ip)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.fail(n.Line, path, "must be a single value, got %s", Describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			w.fail(n.Line, path, "must be true or false, got %s", Describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !isInt(n) {
			w.fail(n.Line, path, "must be a whole number, got %s", Describe(n))
		} else if _, err := strconv.ParseInt(intText(n.Value), 0, t.Bits()); err != nil {
			w.fail(n.Line, path, "%s is out of range (%d to %d)", n.Value, int64(-1)<<(t.Bits()-1), int64(1)<<(t.Bits()-1)-1)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !isInt(n) {
			w.fail(n.Line, path, "must be a whole number, got %s", Describe(n))
		} else if _, err := strconv.ParseUint(intText(n.Value), 0, t.Bits()); err != nil {
			w.fail(n.Line, path, "%s is out of range (0 to %d)", n.Value, uint64(math.MaxUint64)>>(64-t.Bits()))
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
			w.fail(n.Line, path, "must be a number, got %s", Describe(n))
		}
	case reflect.Map:
		w.checkMap(n, t, path)
	case reflect.Interface:
		// Free-form (such as Helm values): any YAML is accepted.
	default:
		// A config type with another kind needs a case here.
		panic(fmt.Sprintf("yamlconf: cannot check %s at %q", t, path))
	}
}

// checkDuration accepts Go duration strings ("30s", "1h"), as yaml.v3
// does; a bare number gets advice instead of yaml.v3's type error.
func (w *walker) checkDuration(n *yaml.Node, path string) {
	switch {
	case n.Kind != yaml.ScalarNode:
		w.fail(n.Line, path, "must be a duration such as 30s or 1h, got %s", Describe(n))
	case n.ShortTag() == "!!int" || n.ShortTag() == "!!float":
		w.fail(n.Line, path, "%s has no unit: write %ss for seconds", n.Value, n.Value)
	default:
		if _, err := time.ParseDuration(n.Value); err != nil || n.ShortTag() != "!!str" {
			w.fail(n.Line, path, "%q is not a duration: write a number with a unit such as 30s or 1h", n.Value)
		}
	}
}

func (w *walker) checkMap(n *yaml.Node, t reflect.Type, path string) {
	w.eachKey(n, t, path, func(k, v *yaml.Node) {
		w.check(v, t.Elem(), joinPath(path, k.Value))
	})
}

func (w *walker) checkMapping(n *yaml.Node, t reflect.Type, path string) {
	fields := fieldsOf(t, w.opts.IgnoredTag)
	w.eachKey(n, t, path, func(k, v *yaml.Node) {
		child := joinPath(path, k.Value)
		f, ok := fields.byName[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown key %q in %s", k.Value, where(path))
			if s := suggest(k.Value, fields.names); s != "" {
				msg += " (did you mean " + s + "?)"
			}
			w.errs = append(w.errs, &Error{Line: k.Line, Path: child, Msg: msg + "; known keys: " + knownKeys(fields.names)})
			return
		}
		if _, ok := w.lines[child]; !ok {
			w.lines[child] = k.Line
		}
		if f.ignored && !w.inIgnored && !isNull(v) {
			w.ignored = append(w.ignored, child)
			w.inIgnored = true
			w.check(v, f.typ, child)
			w.inIgnored = false
			return
		}
		w.check(v, f.typ, child)
	})
}

// eachKey checks what every mapping must be (a mapping, plain keys, no
// key twice), checks "<<" merges against t, and calls fn for each other
// key and its value.
func (w *walker) eachKey(n *yaml.Node, t reflect.Type, path string, fn func(k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		w.fail(n.Line, path, "must be a mapping of keys to values, got %s", Describe(n))
		return
	}
	seen := map[string]int{} // key → line of its first occurrence
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			// "<<: *anchor" merges another mapping (or a list of them) here.
			w.checkMerge(v, t, path)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.fail(k.Line, path, "a key must be a plain name, got %s", Describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.fail(k.Line, "", "duplicate key %q in %s (first at line %d): keep one", k.Value, where(path), first)
			continue
		}
		seen[k.Value] = k.Line
		fn(k, v)
	}
}

func (w *walker) followAlias(n *yaml.Node, t reflect.Type, path string) {
	if n.Alias == nil {
		return // the yaml parser has reported the unknown anchor
	}
	if w.following[n.Alias] {
		w.fail(n.Line, path, "alias *%s is inside the value it refers to", n.Value)
		return
	}
	w.following[n.Alias] = true
	w.check(n.Alias, t, path)
	delete(w.following, n.Alias)
}

// checkMerge checks the value of a "<<" key: a mapping, an alias of one, or
// a list of those.
func (w *walker) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	if v.Kind == yaml.AliasNode && v.Alias != nil && v.Alias.Kind == yaml.SequenceNode {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			w.checkMerge(item, t, path)
		}
		return
	}
	w.check(v, t, path)
}

// field is one key of a struct type.
type field struct {
	typ     reflect.Type
	ignored bool
}

type structFields struct {
	byName map[string]field
	names  []string // sorted
}

var fieldCache sync.Map // struct{reflect.Type; string} → *structFields

// fieldsOf maps the yaml keys of struct type t to their fields, with the
// fields of ",inline" structs among them (as yaml.v3 reads them).
func fieldsOf(t reflect.Type, ignoredTag string) *structFields {
	type cacheKey struct {
		t   reflect.Type
		tag string
	}
	if f, ok := fieldCache.Load(cacheKey{t, ignoredTag}); ok {
		return f.(*structFields)
	}
	sf := &structFields{byName: map[string]field{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, flags, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			if slices.Contains(strings.Split(flags, ","), "inline") && f.Type.Kind() == reflect.Struct {
				add(f.Type)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			sf.byName[name] = field{typ: f.Type, ignored: ignoredTag != "" && f.Tag.Get(ignoredTag) == "ignored"}
		}
	}
	add(t)
	for k := range sf.byName {
		sf.names = append(sf.names, k)
	}
	slices.Sort(sf.names)
	fieldCache.Store(cacheKey{t, ignoredTag}, sf)
	return sf
}

func knownKeys(names []string) string {
	if len(names) == 0 {
		return "none, write {}"
	}
	return strings.Join(names, ", ")
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isInt(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int"
}

// intText is a YAML int as strconv reads it: YAML 1.1's 0o and 0b are
// Go's too, and "_" separators are yaml.v3's.
func intText(s string) string {
	return strings.ReplaceAll(s, "_", "")
}

// Describe names what the user wrote, for "must be X, got Y" messages.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	case yaml.AliasNode:
		return "an alias"
	default:
		return "a document"
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func where(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}
