// Package yamlconf decodes a YAML config file strictly into a Go struct,
// with errors a user can act on: every unknown key, duplicate key and value
// of the wrong kind is reported with the file, line, dotted key path (such
// as agents[1].projects[0].id) and, for an unknown key, the keys known at
// that level and the nearest one.
//
// Decode first walks the YAML tree alongside the Go type (walk.go), which
// finds every problem at once and records the line of each key path, then
// lets yaml.v3 fill the struct. A Validate method returns KeyError values;
// Result.Locate gives them the file and line of their key.
//
// Fields tagged `<Options.IgnoredTag>:"ignored"` are keys the program knows
// but does not implement (agentcfg's GitLab-only sections): they are checked
// like any other and listed in Result.Ignored when the file sets them.
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits, so that a hostile or broken file costs bounded work.
const (
	// DefaultMaxBytes is the largest file Decode reads. Config files are
	// kilobytes; a kas config with thousands of agents stays far below.
	DefaultMaxBytes = 4 << 20
	// DefaultMaxNodes bounds the nodes the check visits: aliases can make
	// a small file expand to a huge tree. Real files visit a few hundred.
	DefaultMaxNodes = 100_000
)

// Options tune Decode. The zero value is strict with the default limits.
type Options struct {
	// File names the file in errors ("config.yaml", a path); empty for none.
	File string
	// IgnoredTag is a struct tag name: fields tagged `<IgnoredTag>:"ignored"`
	// are known but not implemented. Setting one is not an error; its key
	// path is listed in Result.Ignored. Empty: no such fields.
	IgnoredTag string
	// NullSectionIsError refuses an empty (null) value for a pointer to a
	// struct, such as "user:", where presence is the whole meaning and
	// null would silently mean "not set". Off, null leaves it nil.
	NullSectionIsError bool
	// MaxBytes bounds the input (DefaultMaxBytes when 0).
	MaxBytes int
	// MaxNodes bounds the nodes visited, aliases expanded (DefaultMaxNodes
	// when 0).
	MaxNodes int
	// MaxErrors caps the problems reported (DefaultMaxErrors when 0).
	MaxErrors int
}

// Result is what Decode learnt about the file besides the values.
type Result struct {
	// Ignored lists the key paths the file sets whose fields are tagged
	// ignored (see Options.IgnoredTag), outermost only, in file order.
	Ignored []string

	file  string
	lines map[string]int
}

// Line is the line of key path in the file or, for a key that is not in the
// file (a default), of its closest parent; 0 when none is.
func (r *Result) Line(path string) int {
	if r == nil {
		return 0
	}
	for path != "" {
		if line, ok := r.lines[path]; ok {
			return line
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Locate gives every *Error in err (such as Validate's, joined or not) the
// file and the line of its key path, where they are not set, and returns
// err.
func (r *Result) Locate(err error) error {
	if r == nil {
		return err
	}
	for _, e := range Errors(err) {
		if e.File == "" {
			e.File = r.file
		}
		if e.Line == 0 && e.Path != "" {
			e.Line = r.Line(e.Path)
		}
	}
	return err
}

// Decode reads data, one YAML document, into out (a pointer to a struct).
// An empty document (or only comments) leaves out as it is. Every problem
// is an *Error; several are joined with errors.Join.
func Decode(data []byte, out any, opts Options) (*Result, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxNodes <= 0 {
		opts.MaxNodes = DefaultMaxNodes
	}
	res := &Result{file: opts.File, lines: map[string]int{}}
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return res, fmt.Errorf("yamlconf: Decode needs a non-nil pointer, got %T", out)
	}
	if len(data) > opts.MaxBytes {
		return res, &Error{File: opts.File, Msg: fmt.Sprintf("the file is %d bytes, more than the %d a config file may have", len(data), opts.MaxBytes)}
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); errors.Is(err, io.EOF) {
		return res, nil
	} else if err != nil {
		return res, syntaxError(opts.File, err)
	}
	if err := oneDocument(dec, opts.File); err != nil {
		return res, err
	}

	w := &walker{
		opts:      opts,
		lines:     res.lines,
		following: map[*yaml.Node]bool{},
	}
	w.check(&root, v.Type().Elem(), "")
	res.Ignored = w.ignored
	if len(w.errs) > 0 {
		for _, e := range w.errs {
			e.File = opts.File
		}
		return res, Join(w.errs, opts.MaxErrors)
	}
	// The check leaves nothing for yaml.v3 to reject; should it find
	// something, its message is still better than none (and it bounds
	// alias expansion on its own).
	if err := root.Decode(out); err != nil {
		return res, decodeError(opts.File, err)
	}
	return res, nil
}

// oneDocument refuses a second document with content: "---" would
// otherwise silently drop everything after it.
func oneDocument(dec *yaml.Decoder, file string) error {
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return syntaxError(file, err)
		}
		if len(next.Content) == 1 && isNull(next.Content[0]) {
			continue // a trailing "---" or "..."
		}
		return &Error{File: file, Line: next.Line, Msg: "a second YAML document (after ---): a config file holds one document, remove the --- line"}
	}
}

// syntaxError turns a yaml error ("yaml: line 3: did not find expected key")
// into an *Error, with a hint where yaml's own words do not say what to fix.
// yaml.v3 has no typed syntax error, so its text is all there is.
func syntaxError(file string, err error) error {
	e := decodeError(file, err).(*Error)
	for _, h := range syntaxHints {
		if strings.Contains(e.Msg, h.match) {
			e.Msg += " (" + h.hint + ")"
			break
		}
	}
	e.Msg = "invalid YAML: " + e.Msg
	return e
}

// decodeError is yaml.v3's error as an *Error with its line.
func decodeError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	e := &Error{File: file}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	e.Msg = msg
	return e
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

var syntaxHints = []struct{ match, hint string }{
	// yaml reports where the enclosing block starts, not the bad line.
	{"did not find expected", "in the block that starts on this line: check the indentation and brackets below it"},
	{"cannot start any token", "indent with spaces, not tabs"},
	{"mapping values are not allowed", "quote a value that contains ': ', or check the indentation"},
}
