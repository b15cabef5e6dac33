package agentcfg

import "kubetunnel/internal/yamlconf"

// FileName is how errors from Parse name the file (see ParseNamed).
const FileName = "config.yaml"

// maxErrors caps how many problems one error reports.
const maxErrors = yamlconf.DefaultMaxErrors

// Error is one problem in a configuration, located as precisely as known:
// File (for errors from Parse, empty from Validate), Line (0 when unknown),
// the key Path such as gitops.manifest_projects[0].prune, and Msg. Parse and
// Validate return one Error, or several joined with errors.Join; find them
// with errors.As. It is the error of every config file (yamlconf.Error).
type Error = yamlconf.Error

// keyError is the usual shape: the key path, then the problem.
func keyError(line int, path, msg string) *Error {
	e := yamlconf.KeyError(path, "%s", msg)
	e.Line = line
	return e
}

// joinErrors joins errs, capped at maxErrors, or returns nil for none.
func joinErrors(errs []*Error) error {
	return yamlconf.Join(errs, maxErrors)
}
