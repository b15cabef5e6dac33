package agentcfg

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var configGoType = reflect.TypeFor[Config]()

// Parse reads config.yaml strictly, fills the defaults and validates.
// configProject is the id of the repository that holds the file: manifest
// projects without an id use it. An empty file is a valid configuration.
//
// Every problem found is reported as an *Error with the line and key path,
// several joined with errors.Join. Keys of GitLab's agent that this one
// does not implement are not errors: they are listed in Config.Ignored.
func Parse(data []byte, configProject string) (*Config, error) {
	return ParseNamed(FileName, data, configProject)
}

// ParseNamed is Parse with errors that name the file as given, such as
// ".gitlab/agents/production/config.yaml", instead of FileName.
func ParseNamed(file string, data []byte, configProject string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(file, err)
	}
	sc := newShapeChecker()
	sc.check(&root, configGoType, "")
	if len(sc.errs) > 0 {
		return nil, joinErrors(withFile(file, sc.errs))
	}

	cfg := &Config{}
	// The shape check should leave nothing for the decoder to reject; the
	// strict decoder stays as the second line of defence (and it limits
	// alias expansion).
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		msg := strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n  ", " ")
		return nil, &Error{File: file, Msg: msg}
	}

	cfg.Ignored = sc.ignored
	cfg.Default(configProject)
	if errs := cfg.validate(); len(errs) > 0 {
		for _, e := range errs {
			e.Line = sc.lineOf(e.Path)
		}
		return nil, joinErrors(withFile(file, errs))
	}
	return cfg, nil
}

// lineOf finds the line of path or, for a key that was defaulted and so is
// not in the file, of its closest parent.
func (c *shapeChecker) lineOf(path string) int {
	for path != "" {
		if line, ok := c.lines[path]; ok {
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

func withFile(file string, errs []*Error) []*Error {
	for _, e := range errs {
		e.File = file
	}
	return errs
}

// syntaxError turns a yaml error ("yaml: line 3: did not find expected key")
// into an *Error, with a hint where yaml's own words do not say what to fix.
func syntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "\n  ", " ")
	e := &Error{File: file}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	for _, h := range syntaxHints {
		if strings.Contains(msg, h.match) {
			msg += " (" + h.hint + ")"
			break
		}
	}
	e.Msg = "invalid YAML: " + msg
	return e
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

var syntaxHints = []struct{ match, hint string }{
	// yaml reports where the enclosing block starts, not the bad line.
	{"did not find expected", "in the block that starts on this line: check the indentation and brackets below it"},
	{"cannot start any token", "indent with spaces, not tabs"},
	{"mapping values are not allowed", "quote a value that contains ': ', or check the indentation"},
}
