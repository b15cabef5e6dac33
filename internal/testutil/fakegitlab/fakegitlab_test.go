package fakegitlab

import (
	"os/exec"
	"strings"
	"testing"
)

// TestGitOverHTTP: the fake serves its projects over smart HTTP with the
// git credential, and refuses without it.
func TestGitOverHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("runs git over HTTP through git http-backend: not in -short")
	}
	gl := New(t)
	p := gl.AddProject("group/apps", map[string]string{"app.yaml": "kind: ConfigMap\n"})
	commit := p.Commit("second", map[string]string{"b.yaml": "x: 1\n"})
	u := strings.Replace(gl.GitURL(p), "://", "://"+gl.GitUsername+":"+gl.GitPassword+"@", 1)
	git := func(args ...string) *exec.Cmd {
		cmd := exec.Command("git", args...)
		cmd.Env = append(cmd.Environ(), "GIT_SSL_CAINFO="+gl.CAFile, "GIT_TERMINAL_PROMPT=0")
		return cmd
	}
	out, err := git("ls-remote", u, "HEAD").CombinedOutput()
	if err != nil {
		t.Fatalf("git ls-remote: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), commit) {
		t.Fatalf("HEAD is %s, want %s", out, commit)
	}
	bad := strings.Replace(gl.GitURL(p), "://", "://"+gl.GitUsername+":wrong@", 1)
	if out, err := git("ls-remote", bad).CombinedOutput(); err == nil {
		t.Fatalf("wrong git password accepted:\n%s", out)
	}
	gl.SetDown(true)
	if out, err := git("ls-remote", u).CombinedOutput(); err == nil {
		t.Fatalf("GitLab down served git:\n%s", out)
	}
}
