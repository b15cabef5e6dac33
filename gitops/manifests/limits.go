package manifests

import (
	"errors"
	"fmt"
)

// Defaults, in one place. The names of the limits are those of kas's
// config keys (agent.gitops.max_…) and upstream's.
const (
	// DefaultGlob selects every YAML and JSON file (agentcfg.DefaultGlob).
	DefaultGlob = "/**/*.{yaml,yml,json}"
	// DefaultMaxFileSize is max_manifest_file_size.
	DefaultMaxFileSize = 5 << 20
	// DefaultMaxTotalSize is max_total_manifest_file_size.
	DefaultMaxTotalSize = 20 << 20
	// DefaultMaxFiles is max_number_of_files.
	DefaultMaxFiles = 1000
	// DefaultMaxPaths is max_number_of_paths: globs per project.
	DefaultMaxPaths = 100
	// maxGlobLength bounds one glob, so a hostile pattern cannot make
	// matching expensive.
	maxGlobLength = 1024
	// maxExpansions bounds the patterns a glob's braces expand to, for
	// the same reason.
	maxExpansions = 64
)

// Names of the limits, as LimitError.Limit holds them.
const (
	LimitFileSize  = "max_manifest_file_size"
	LimitTotalSize = "max_total_manifest_file_size"
	LimitFiles     = "max_number_of_files"
	LimitPaths     = "max_number_of_paths"
)

// Limits bound what Select returns for one commit. Zero fields take the
// defaults.
type Limits struct {
	MaxFileSize  int64 // bytes in one file
	MaxTotalSize int64 // bytes in all selected files
	MaxFiles     int   // selected files
	MaxPaths     int   // globs
}

// WithDefaults returns l with zero (or negative) fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = DefaultMaxFileSize
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = DefaultMaxTotalSize
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxPaths <= 0 {
		l.MaxPaths = DefaultMaxPaths
	}
	return l
}

// Sentinel errors, wrapped with what was wrong.
var (
	// ErrLimit is what every *LimitError is (errors.Is).
	ErrLimit = errors.New("manifest limit exceeded")
	// ErrInvalidGlob: a glob is not a valid doublestar pattern, or too long.
	ErrInvalidGlob = errors.New("invalid glob")
)

// LimitError is a commit (or a project's paths) over one of the Limits.
type LimitError struct {
	// Limit is one of LimitFileSize, LimitTotalSize, LimitFiles, LimitPaths.
	Limit string
	// Path is the file that went over the limit, "/"-rooted: the file
	// itself (LimitFileSize), or the first one past it (LimitTotalSize,
	// LimitFiles). Empty for LimitPaths.
	Path string
	// Value is what was found: the file's size, the total size of the
	// selected files, the number of files or of globs.
	Value int64
	// Max is the limit.
	Max int64
}

func (e *LimitError) Error() string {
	switch e.Limit {
	case LimitFileSize:
		v, m := sizes(e.Value, e.Max)
		return fmt.Sprintf("manifest file %q is %s, over %s (%s)", e.Path, v, e.Limit, m)
	case LimitTotalSize:
		v, m := sizes(e.Value, e.Max)
		return fmt.Sprintf("the selected manifest files total %s, over %s (%s) from file %q on", v, e.Limit, m, e.Path)
	case LimitFiles:
		return fmt.Sprintf("%d manifest files match, over %s (%d) from file %q on", e.Value, e.Limit, e.Max, e.Path)
	case LimitPaths:
		return fmt.Sprintf("%d paths[].glob, over %s (%d)", e.Value, e.Limit, e.Max)
	default:
		return fmt.Sprintf("%s: %d, the limit is %d", e.Limit, e.Value, e.Max)
	}
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// sizes formats a size and its limit for people: "6.2 MiB" and "5 MiB".
// When rounding would make them look equal ("5.0 MiB" over "5 MiB"), both
// are given in bytes.
func sizes(v, limit int64) (string, string) {
	if formatSize(v, true) == formatSize(limit, true) {
		return fmt.Sprintf("%d bytes", v), fmt.Sprintf("%d bytes", limit)
	}
	return formatSize(v, false), formatSize(limit, false)
}

// formatSize writes n bytes in the largest unit it reaches, with one
// decimal unless exact (or always, with tenths): "512 bytes", "1.5 KiB",
// "5 MiB", "6.2 MiB".
func formatSize(n int64, tenths bool) string {
	const kib, mib, gib = 1 << 10, 1 << 20, 1 << 30
	unit, name := int64(1), "bytes"
	switch {
	case n >= gib:
		unit, name = gib, "GiB"
	case n >= mib:
		unit, name = mib, "MiB"
	case n >= kib:
		unit, name = kib, "KiB"
	}
	if unit == 1 || (n%unit == 0 && !tenths) {
		return fmt.Sprintf("%d %s", n/unit, name)
	}
	return fmt.Sprintf("%.1f %s", float64(n)/float64(unit), name)
}
