package agentk

import (
	"fmt"
	"net/http"

	"kubetunnel/internal/gitlabaccess"
	"kubetunnel/internal/kubehttp"
	"kubetunnel/tunnel"
)

// serveGitLab forwards a request of a caller GitLab admitted (CI job,
// user). GitLab applied ci_access/user_access already; kas sent the
// identity access_as chose: the agent's own (no impersonation) or one to
// impersonate with GitLab's exact strings.
func (f *forwarder) serveGitLab(w http.ResponseWriter, r *http.Request, vals []string) {
	if len(vals) != 1 {
		kubehttp.WriteStatus(w, r, http.StatusBadRequest, fmt.Sprintf("%s: %d values, expected one", tunnel.HeaderGitLabIdentity, len(vals)))
		return
	}
	id := &identity{}
	if vals[0] != tunnel.GitLabIdentityAgent {
		gid, err := gitlabaccess.ParseIdentityHeader(vals[0])
		if err != nil {
			kubehttp.WriteStatus(w, r, http.StatusBadRequest, fmt.Sprintf("%s: %v", tunnel.HeaderGitLabIdentity, err))
			return
		}
		id.gitlab = gid
	}
	f.proxy(w, r, id)
}
