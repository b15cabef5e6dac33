package yamlconf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultMaxErrors caps how many problems one error reports: enough to fix
// a file in one go, few enough to read in a log line.
const DefaultMaxErrors = 20

// Error is one problem in a config file, located as precisely as known.
// Decode returns one Error, or several joined with errors.Join; find them
// with errors.As. Validate methods return them too (KeyError), and
// Result.Locate adds the file and line.
type Error struct {
	// File names the file, empty when the caller did not name it.
	File string
	// Line is the 1-based line in the file, 0 when unknown.
	Line int
	// Path is the dotted key path, such as agents[1].projects[0]; empty
	// for the whole file.
	Path string
	// Msg says what is wrong and how to fix it. It starts with Path where
	// the path reads as the subject ("agents[0].name: missing").
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// KeyError is the usual shape of a problem with one key: "path: msg".
// Validate methods use it so that Result.Locate can point into the file.
func KeyError(path, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		return &Error{Msg: msg}
	}
	return &Error{Path: path, Msg: path + ": " + msg}
}

// Join joins errs, capped at max (DefaultMaxErrors when 0), or returns nil
// for none. One error is returned as itself.
func Join(errs []*Error, max int) error {
	if len(errs) == 0 {
		return nil
	}
	if max <= 0 {
		max = DefaultMaxErrors
	}
	out := make([]error, 0, min(len(errs), max)+1)
	for _, e := range errs[:min(len(errs), max)] {
		out = append(out, e)
	}
	if n := len(errs) - max; n > 0 {
		out = append(out, &Error{File: errs[0].File, Msg: "and " + strconv.Itoa(n) + " more problems"})
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

// Errors lists the *Error values in err: err itself, or those wrapped or
// joined in it (fmt.Errorf's %w, errors.Join, nested). Other errors are
// skipped.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case *Error:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, c := range x.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}
