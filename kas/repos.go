package kas

import (
	"kubetunnel/gitops/gitrepo"
	"kubetunnel/kas/repos"
)

// repoSet is the repositories kas reads (kas/repos), with the reload's
// view of repositories[] as static.
type repoSet struct {
	*repos.Set
	static configuredRepos
}

func newRepoSet(s *repos.Set) *repoSet {
	return &repoSet{Set: s, static: configuredRepos{s}}
}

// configuredRepos is repositories[] as a config reload changes it.
type configuredRepos struct{ set *repos.Set }

// update makes repositories[] next and names what changed.
func (c configuredRepos) update(next []gitrepo.Repository) (setChanges, error) {
	ch, err := c.set.Update(next)
	return setChanges{added: ch.Added, removed: ch.Removed, changed: ch.Changed}, err
}
