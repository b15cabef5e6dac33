package kas

import "kubetunnel/kas/repos"

// repoSet is the repositories kas reads (kas/repos).
type repoSet struct{ *repos.Set }

func newRepoSet(s *repos.Set) *repoSet { return &repoSet{Set: s} }
