// Package gitrepo keeps local mirrors of the git repositories kas reads:
// agents' config projects and manifest projects.
//
// A Cache holds one bare mirror per configured repository under a directory
// of its own, so a restarted kas fetches only what changed. Fetch brings a
// mirror up to date (one fetch at a time per repository, shared by
// concurrent callers); Resolve, ReadFile and Walk read from the mirror and
// never touch the network. A Poller fetches every repository periodically
// and on Trigger (a push webhook), and tells subscribers when a repository
// changed.
//
// Local repositories (file:// URLs and paths) are read with the git binary's
// git-upload-pack, which must be installed; https and ssh need nothing.
package gitrepo
