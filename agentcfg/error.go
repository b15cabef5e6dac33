package agentcfg

import (
	"errors"
	"strconv"
	"strings"
)

// FileName is how errors from Parse name the file (see ParseNamed).
const FileName = "config.yaml"

// maxErrors caps how many problems one error reports: enough to fix a file
// in one go, few enough to read in a log line.
const maxErrors = 20

// Error is one problem in a configuration, located as precisely as known.
// Parse and Validate return one Error, or several joined with errors.Join;
// find them with errors.As.
type Error struct {
	// File names the file for errors from Parse, empty from Validate.
	File string
	// Line is the 1-based line in the file, 0 when unknown.
	Line int
	// Path is the key path, such as gitops.manifest_projects[0].prune;
	// empty for the whole file.
	Path string
	// Msg says what is wrong and how to fix it.
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

// keyError is the usual shape: the key path, then the problem.
func keyError(line int, path, msg string) *Error {
	if path == "" {
		return &Error{Line: line, Msg: msg}
	}
	return &Error{Line: line, Path: path, Msg: path + ": " + msg}
}

// joinErrors joins errs, capped at maxErrors, or returns nil for none.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, 0, min(len(errs), maxErrors)+1)
	for _, e := range errs[:min(len(errs), maxErrors)] {
		out = append(out, e)
	}
	if n := len(errs) - maxErrors; n > 0 {
		out = append(out, &Error{File: errs[0].File, Msg: "and " + strconv.Itoa(n) + " more problems"})
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}
