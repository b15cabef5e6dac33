// Package manifests selects the manifest files of one commit of a manifest
// project, for kas to stream to agentk.
//
// A project's paths[].glob are doublestar patterns
// (github.com/bmatcuk/doublestar/v4) matched against paths rooted at the
// repository root: "/manifests/app.yaml". A glob without the leading "/"
// means the same. No paths means DefaultGlob. Files in dot-directories and
// dot-files (".gitlab/agents/…", ".github/…", ".prettierrc.yaml") are never
// selected, whatever the globs say: they hold tooling configuration, not
// manifests.
//
// Limits bound what one commit may select (file size, total size, file
// count, number of globs). Going over one is a *LimitError, which names the
// limit and the file; match it with errors.Is(err, ErrLimit) or errors.As.
// Select reads no content: it checks every limit from sizes in the git tree,
// and File.Read reads one file when the caller is ready for it.
package manifests
