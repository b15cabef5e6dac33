package agentcfg

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxShapeVisits bounds the work of checkShape: aliases can make a small
// file expand to a huge tree. Real config files visit a few hundred nodes.
const maxShapeVisits = 100_000

var durationGoType = reflect.TypeFor[Duration]()

// shapeChecker walks the YAML tree alongside the Go types of Config. It
// finds what the yaml decoder reports badly or not at all: unknown keys (with
// the key path and the keys that are known), duplicate keys, and values of
// the wrong kind. It also records the line of every key path, so that
// Validate's errors can point into the file.
type shapeChecker struct {
	errs   []*Error
	lines  map[string]int
	visits int
	// ignored lists the key paths set in the file that are GitLab's but
	// not implemented here (fields tagged agentcfg:"ignored"), outermost
	// only; inIgnored is set while walking inside one.
	ignored   []string
	inIgnored bool
	// following holds the alias targets being walked, to catch an alias
	// inside the value it names (yaml accepts "x: &x {<<: *x}").
	following map[*yaml.Node]bool
}

func newShapeChecker() *shapeChecker {
	return &shapeChecker{lines: make(map[string]int), following: make(map[*yaml.Node]bool)}
}

func (c *shapeChecker) fail(line int, path, format string, args ...any) {
	c.errs = append(c.errs, keyError(line, path, fmt.Sprintf(format, args...)))
}

func (c *shapeChecker) check(n *yaml.Node, t reflect.Type, path string) {
	c.visits++
	if c.visits == maxShapeVisits {
		c.fail(n.Line, "", "the file is too large or uses too many aliases")
	}
	if c.visits >= maxShapeVisits {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, child := range n.Content {
			c.check(child, t, path)
		}
		return
	case yaml.AliasNode:
		c.followAlias(n, t, path)
		return
	case 0:
		// An empty file or one with only comments.
		return
	}
	if _, ok := c.lines[path]; !ok {
		c.lines[path] = n.Line
	}
	if isNull(n) {
		// An empty value leaves the default, except where presence is the
		// whole meaning: "user:" must not silently become access as agent.
		if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
			c.fail(n.Line, path, "empty value: write %s: {}", lastKey(path))
		}
		return
	}
	if t == durationGoType {
		if _, err := parseDurationNode(n); err != nil {
			c.fail(n.Line, path, "%s", err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		c.check(n, t.Elem(), path)
	case reflect.Struct:
		c.checkMapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.fail(n.Line, path, "must be a list, got %s", describeNode(n))
			return
		}
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			if isNull(item) {
				// The yaml decoder drops empty items: say so rather than
				// silently lose a manifest project.
				c.fail(item.Line, ip, "empty list item: remove the '-' or give it a value")
				continue
			}
			c.check(item, t.Elem(), ip)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			c.fail(n.Line, path, "must be a single value, got %s", describeNode(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			c.fail(n.Line, path, "must be true or false, got %s", describeNode(n))
		}
	case reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			c.fail(n.Line, path, "must be a whole number, got %s", describeNode(n))
		}
	case reflect.Map:
		// map[string]string: labels and annotations.
		if n.Kind != yaml.MappingNode {
			c.fail(n.Line, path, "must be a mapping of keys to values, got %s", describeNode(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				c.fail(k.Line, path, "a key must be a plain name, got %s", describeNode(k))
				continue
			}
			c.check(v, t.Elem(), joinPath(path, k.Value))
		}
	case reflect.Interface:
		// Free-form (Helm values): any YAML is accepted.
	default:
		// Config has no other kinds; a new field kind needs a case here.
		panic(fmt.Sprintf("agentcfg: shape check does not handle %s", t))
	}
}

func (c *shapeChecker) checkMapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.fail(n.Line, path, "must be a mapping of keys to values, got %s", describeNode(n))
		return
	}
	fields := yamlFields(t)
	seen := make(map[string]int) // key → line of its first occurrence
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			// "<<: *anchor" merges another mapping (or a list of them) here.
			c.checkMerge(v, t, path)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			c.fail(k.Line, path, "a key must be a plain name, got %s", describeNode(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			c.fail(k.Line, "", "duplicate key %q in %s (first at line %d): keep one", k.Value, where(path), first)
			continue
		}
		seen[k.Value] = k.Line
		field, ok := fields[k.Value]
		if !ok {
			c.errs = append(c.errs, &Error{
				Line: k.Line,
				Path: joinPath(path, k.Value),
				Msg:  fmt.Sprintf("unknown key %q in %s; known keys: %s", k.Value, where(path), knownKeys(fields)),
			})
			continue
		}
		child := joinPath(path, k.Value)
		if _, ok := c.lines[child]; !ok {
			c.lines[child] = k.Line
		}
		if field.ignored && !c.inIgnored && !isNull(v) {
			c.ignored = append(c.ignored, child)
			c.inIgnored = true
			c.check(v, field.typ, child)
			c.inIgnored = false
			continue
		}
		c.check(v, field.typ, child)
	}
}

func (c *shapeChecker) followAlias(n *yaml.Node, t reflect.Type, path string) {
	if n.Alias == nil {
		return // the yaml parser has reported the unknown anchor
	}
	if c.following[n.Alias] {
		c.fail(n.Line, path, "alias *%s is inside the value it refers to", n.Value)
		return
	}
	c.following[n.Alias] = true
	c.check(n.Alias, t, path)
	delete(c.following, n.Alias)
}

// checkMerge checks the value of a "<<" key: a mapping, an alias of one, or
// a list of those.
func (c *shapeChecker) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	if v.Kind == yaml.AliasNode && v.Alias != nil && v.Alias.Kind == yaml.SequenceNode {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			c.checkMerge(item, t, path)
		}
		return
	}
	c.check(v, t, path)
}

// yamlField is one key of a struct type.
type yamlField struct {
	typ reflect.Type
	// ignored: a key of GitLab's that this agent does not implement.
	ignored bool
}

// yamlFields maps the yaml keys of struct type t to their fields.
func yamlFields(t reflect.Type) map[string]yamlField {
	fields := make(map[string]yamlField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = yamlField{typ: f.Type, ignored: f.Tag.Get("agentcfg") == "ignored"}
	}
	return fields
}

func knownKeys(fields map[string]yamlField) string {
	if len(fields) == 0 {
		return "none, write {}"
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describeNode names what the user wrote, for "must be X, got Y" messages.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
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
