package kas

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kubetunnel/api/rpc"
)

// TestWebhookTriggersGitLabMirror: with gitlab:, GitLab's push webhook
// fetches the mirror of the pushed project at once (polling is too slow
// to be what fetched it), matched by path_with_namespace; a project kas
// does not mirror matches nothing.
func TestWebhookTriggersGitLabMirror(t *testing.T) {
	e := newGitLabEnv(t, time.Minute, time.Minute)
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(webhookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cfg.Git.WebhookSecretFile = secretFile
	e.cfg.Agent.Configuration.PollPeriod = time.Hour
	e.cfg.Agent.GitOps.PollPeriod = time.Hour
	e.start()
	a, err := e.dialToken(e.token)
	if err != nil {
		t.Fatal(err)
	}
	w := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: "group/apps"})
	if s := w.next(t, setTimeout); s.commit != e.apps.Repo.Git("rev-parse", "HEAD") {
		t.Fatalf("first set for %s", s.commit)
	}
	second := e.apps.Commit("push", map[string]string{"app.yaml": "kind: ConfigMap\nn: 2\n"})
	hdr := map[string]string{"X-Gitlab-Token": webhookSecret, "X-Gitlab-Event": "Push Hook"}
	// GitLab names its external URL, which need not be gitlab.address.
	code, out := e.postWebhook(gitlabPush("https://gitlab.example.com/group/apps.git", "group/apps"), hdr)
	if code != http.StatusAccepted || fmt.Sprint(out["triggered"]) != "[group/apps]" {
		t.Fatalf("GitLab push for a mirrored project: %d %v", code, out)
	}
	if s := w.next(t, setTimeout); s.commit != second {
		t.Fatalf("after the push webhook: set for %s, want %s", s.commit, second)
	}
	// other/secret was refused to the agent: kas never mirrored it.
	code, out = e.postWebhook(gitlabPush("https://gitlab.example.com/other/secret.git", "other/secret"), hdr)
	if code != http.StatusOK || fmt.Sprint(out["triggered"]) != "[]" {
		t.Fatalf("GitLab push for a project kas does not mirror: %d %v", code, out)
	}
}
