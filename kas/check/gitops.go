package check

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"kubetunnel/agentcfg"
	"kubetunnel/gitops/gitrepo"
	"kubetunnel/gitops/manifests"
	"kubetunnel/internal/yamlconf"
)

// Verdict reports one item of kas check: err nil is "ok" with detail
// appended, else "FAIL" with err.
type Verdict func(item string, err error, detail string)

// ManifestGlobs reports, for each manifest project of an agent, the
// globs that select no file at the project's ref: agentk refuses such a
// commit (no_manifests_matched) unless the project sets allow_empty. It
// names the directories closest to what the glob asks for.
func ManifestGlobs(repos *gitrepo.Cache, agent, file string, ac *agentcfg.Config, verdict Verdict) {
	for i, p := range ac.GitOps.ManifestProjects {
		item := fmt.Sprintf("agent %s: %s: gitops.manifest_projects[%d] (%s) paths", agent, file, i, p.DisplayName())
		if p.AllowEmpty || !repos.Has(p.ID) {
			continue
		}
		commit, err := repos.Resolve(p.ID, gitrepo.Ref{Branch: p.Ref.Branch, Tag: p.Ref.Tag, Commit: p.Ref.Commit})
		if err != nil {
			verdict(item, err, "")
			continue
		}
		globs := make([]string, 0, len(p.Paths))
		for _, g := range p.Paths {
			globs = append(globs, g.Glob)
		}
		m, err := manifests.NewMatcher(globs, len(globs)+1)
		if err != nil {
			verdict(item, err, "")
			continue
		}
		var paths []string
		dirs := map[string]bool{}
		err = repos.Walk(p.ID, commit, func(p string, _ int64, _ func() ([]byte, error)) error {
			paths = append(paths, p)
			for d := path.Dir(p); d != "."; d = path.Dir(d) {
				dirs["/"+d] = true
			}
			return nil
		})
		if err != nil {
			verdict(item, err, "")
			continue
		}
		unmatched := m.Unmatched(paths)
		if len(unmatched) == 0 {
			verdict(item, nil, fmt.Sprintf(": every glob selects files at %s", commit[:min(12, len(commit))]))
			continue
		}
		var msgs []string
		for _, g := range unmatched {
			msg := fmt.Sprintf("glob %q selects no file at %s", g, commit[:min(12, len(commit))])
			if near := nearestDir(globDir(g), dirs); near != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", near)
			}
			msgs = append(msgs, msg)
		}
		verdict(item, fmt.Errorf("%s: agentk applies and prunes nothing until it does (or set allow_empty: true)", strings.Join(msgs, "; ")), "")
	}
}

// globDir is the literal directory a glob starts with ("/manifest" for
// "/manifest/**/*.yaml"), or "".
func globDir(g string) string {
	var lit []string
	for _, c := range strings.Split(strings.Trim(g, "/"), "/") {
		if strings.ContainsAny(c, "*?[{\\") {
			break
		}
		lit = append(lit, c)
	}
	if len(lit) == len(strings.Split(strings.Trim(g, "/"), "/")) {
		lit = lit[:len(lit)-1] // the last literal part names a file
	}
	if len(lit) == 0 {
		return ""
	}
	return "/" + strings.Join(lit, "/")
}

// nearestDir returns the directory of dirs closest to want by edit
// distance, if it is close (at most 2 edits, fewer than half the length).
func nearestDir(want string, dirs map[string]bool) string {
	if want == "" || dirs[want] {
		return ""
	}
	best, bestD := "", 3
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if dist := yamlconf.EditDistance(want, d); dist < bestD && dist*2 < len(want) {
			best, bestD = d, dist
		}
	}
	return best
}

// NearAgentDir fails when the config project has no directory for the
// agent but one whose name is a typo away (.gitlab/agents/prodution for
// agent production): the agent would silently run with the default config.
func NearAgentDir(repos *gitrepo.Cache, project, commit, agent string) error {
	const prefix = ".gitlab/agents/"
	dirs := map[string]bool{}
	err := repos.Walk(project, commit, func(p string, _ int64, _ func() ([]byte, error)) error {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			if name, _, found := strings.Cut(rest, "/"); found {
				dirs["/"+name] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil // the config check above reported what matters
	}
	if near := nearestDir("/"+agent, dirs); near != "" {
		return fmt.Errorf("no %s%s/config.yaml in %s, but %s%s/ exists: rename the directory or the agent (the agent runs with the default config)",
			prefix, agent, project, prefix, strings.TrimPrefix(near, "/"))
	}
	return nil
}
