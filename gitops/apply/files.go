package apply

import (
	"context"
	"fmt"
	"strings"

	"kubetunnel/gitops/manifests"
)

// SyncFiles parses a project's files at commit and syncs them: Parse,
// then Sync, with every failure in the Result (Failed, Reason, Failure)
// instead of an error.
//
// Unless p.AllowEmpty, a commit in which one of p.Paths selects no file,
// or whose files hold no object, is not synced at all: the Result has
// FailureNoManifests and nothing is applied or pruned (a glob with a
// typo would otherwise prune everything its files held).
//
// files == nil with p.AllowEmpty and p.Prune prunes everything the project
// applied (the project was removed from the config).
func (a *Applier) SyncFiles(ctx context.Context, p Project, commit string, files []File) Result {
	p = p.withDefaults()
	res := Result{Commit: commit}
	fail := func(err error) Result {
		res.Failed, res.Reason, res.Failure = true, err.Error(), failureOf(err)
		return res
	}
	if !p.AllowEmpty {
		if err := checkPaths(p.Paths, files); err != nil {
			return fail(err)
		}
	}
	objs, err := a.Parse(files, p.DefaultNamespace)
	if err != nil {
		return fail(fmt.Errorf("%w (nothing was applied or pruned)", err))
	}
	if len(objs) == 0 && !p.AllowEmpty {
		return fail(fmt.Errorf("%w: the %d selected file(s) hold no object; nothing was applied or pruned: fix the manifests or paths, or set allow_empty: true to prune everything", ErrNoManifests, len(files)))
	}
	out, err := a.Sync(ctx, p, commit, objs)
	if err != nil {
		out.Commit = commit
		res = out
		return fail(err)
	}
	return out
}

// checkPaths fails with ErrNoManifests when a glob selects none of files.
func checkPaths(globs []string, files []File) error {
	if len(globs) == 0 && len(files) > 0 {
		return nil
	}
	m, err := manifests.NewMatcher(globs, len(globs)+1)
	if err != nil {
		return fmt.Errorf("%w: paths: %v", ErrInvalidProject, err)
	}
	paths := make([]string, 0, len(files))
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	unmatched := m.Unmatched(paths)
	if len(unmatched) == 0 {
		return nil
	}
	return fmt.Errorf("%w: paths %s select no file; nothing was applied or pruned: fix the glob, or set allow_empty: true if the project may be empty",
		ErrNoManifests, quoteAll(unmatched))
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
