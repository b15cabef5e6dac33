package kas

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kubetunnel/api/rpc"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/kas/webhook"
)

const webhookSecret = "s3cret-0123456789"

func gitlabPush(url, path string) []byte {
	b, _ := json.Marshal(map[string]any{
		"object_kind": "push",
		"ref":         "refs/heads/main",
		"project":     map[string]any{"git_http_url": url, "path_with_namespace": path, "web_url": strings.TrimSuffix(url, ".git")},
		"repository":  map[string]any{"git_http_url": url, "homepage": strings.TrimSuffix(url, ".git")},
	})
	return b
}

func githubPush(url, fullName string) []byte {
	b, _ := json.Marshal(map[string]any{
		"ref":        "refs/heads/main",
		"repository": map[string]any{"clone_url": url, "full_name": fullName},
	})
	return b
}

func githubSignature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// postWebhook sends a webhook and returns the status and the decoded body.
func (e *env) postWebhook(body []byte, hdr map[string]string) (int, map[string]any) {
	e.t.Helper()
	code, raw := tu.Do(e.t, http.MethodPost, e.obsURL()+"/api/v1/webhooks/git", bytes.NewReader(body), hdr)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Fatalf("webhook answered %d with a body that is not JSON: %q", code, raw)
	}
	return code, out
}

// newWebhookEnv: polling so slow that only the webhook (and the first
// fetch at start) can fetch.
func newWebhookEnv(t *testing.T) (*env, *repoForTest) {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(webhookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, repo := newGitOpsEnv(t, func(c *Config) {
		c.Agent.Configuration.PollPeriod = time.Hour
		c.Agent.GitOps.PollPeriod = time.Hour
		c.Git.WebhookSecretFile = secretFile
	})
	return e, &repoForTest{repo.URL(), repo.Commit}
}

type repoForTest struct {
	url    string
	commit func(msg string, files map[string]string) string
}

func TestWebhookTriggersFetch(t *testing.T) {
	e, repo := newWebhookEnv(t)
	first := repo.commit("first", manifestTree)
	e.start()
	a := e.dialAgent()
	w := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Globs: []string{"/manifests/a.yaml"}})
	if s := w.next(t, setTimeout); s.commit != first {
		t.Fatalf("first set for %s, want %s", s.commit, first)
	}

	var latencies []time.Duration
	push := func(n int) string {
		return repo.commit(fmt.Sprintf("push %d", n), map[string]string{"manifests/a.yaml": fmt.Sprintf("n: %d\n", n)})
	}

	// GitLab: token header; matched by path_with_namespace (its URL is not
	// the file:// URL kas fetches).
	second := push(2)
	start := time.Now()
	body := gitlabPush("https://gitlab.example.com/group/manifests.git", manifestProject)
	code, out := e.postWebhook(body, map[string]string{"X-Gitlab-Token": webhookSecret, "X-Gitlab-Event": "Push Hook"})
	if code != http.StatusAccepted || fmt.Sprint(out["triggered"]) != "["+manifestProject+"]" {
		t.Fatalf("GitLab push: %d %v", code, out)
	}
	s := w.next(t, setTimeout)
	if s.commit != second {
		t.Fatalf("after a GitLab push: set for %s, want %s", s.commit, second)
	}
	latencies = append(latencies, s.at.Sub(start))

	// GitHub: HMAC signature; matched by URL (scheme case and ".git" do
	// not matter).
	third := push(3)
	start = time.Now()
	body = githubPush("FILE://"+strings.TrimPrefix(repo.url, "file://")+".git", "someone/else")
	code, out = e.postWebhook(body, map[string]string{"X-Hub-Signature-256": githubSignature(webhookSecret, body), "X-GitHub-Event": "push"})
	if code != http.StatusAccepted || fmt.Sprint(out["triggered"]) != "["+manifestProject+"]" {
		t.Fatalf("GitHub push: %d %v", code, out)
	}
	if s = w.next(t, setTimeout); s.commit != third {
		t.Fatalf("after a GitHub push: set for %s, want %s", s.commit, third)
	}
	latencies = append(latencies, s.at.Sub(start))

	// Refused and unmatched webhooks fetch nothing.
	push(4)
	gl := gitlabPush("https://gitlab.example.com/group/manifests.git", manifestProject)
	gh := githubPush(repo.url, manifestProject)
	for _, c := range []struct {
		name string
		body []byte
		hdr  map[string]string
		code int
		want string
	}{
		{"GitLab, wrong token", gl, map[string]string{"X-Gitlab-Token": "wrong"}, 401, "X-Gitlab-Token"},
		{"GitLab, token with a suffix", gl, map[string]string{"X-Gitlab-Token": webhookSecret + "x"}, 401, "X-Gitlab-Token"},
		{"GitHub, signed with another secret", gh, map[string]string{"X-Hub-Signature-256": githubSignature("wrong", gh)}, 401, "X-Hub-Signature-256"},
		{"GitHub, signature of another body", gh, map[string]string{"X-Hub-Signature-256": githubSignature(webhookSecret, gl)}, 401, "X-Hub-Signature-256"},
		{"GitHub, not hex", gh, map[string]string{"X-Hub-Signature-256": "sha256=zz"}, 401, "X-Hub-Signature-256"},
		{"no secret at all", gl, nil, 401, "X-Gitlab-Token"},
		{"unmatched repository", gitlabPush("https://gitlab.example.com/group/else.git", "group/else"), map[string]string{"X-Gitlab-Token": webhookSecret}, 200, "no configured repository matches"},
		{"not JSON", []byte("{oops"), map[string]string{"X-Gitlab-Token": webhookSecret}, 400, "not a gitlab push event"},
		{"JSON without a repository", []byte(`{"object_kind":"push"}`), map[string]string{"X-Gitlab-Token": webhookSecret}, 400, "no project or repository URL"},
		{"GitLab merge request event", gl, map[string]string{"X-Gitlab-Token": webhookSecret, "X-Gitlab-Event": "Merge Request Hook"}, 200, "not a push"},
		{"GitHub ping", gh, map[string]string{"X-Hub-Signature-256": githubSignature(webhookSecret, gh), "X-GitHub-Event": "ping"}, 200, "pong"},
	} {
		code, out := e.postWebhook(c.body, c.hdr)
		if code != c.code || !strings.Contains(fmt.Sprint(out), c.want) {
			t.Errorf("%s: %d %v, want %d with %q", c.name, code, out, c.code, c.want)
		}
	}
	big := bytes.Repeat([]byte(" "), webhook.MaxBody+1)
	if code, out := e.postWebhook(big, map[string]string{"X-Gitlab-Token": webhookSecret}); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d %v", code, out)
	}
	w.quiet(t, time.Second, "refused and unmatched webhooks")

	for result, want := range map[string]float64{"triggered": 2, "unauthorized": 6, "unmatched": 1, "bad_request": 3, "ignored": 2} {
		if got := counterValue(t, e, "kas_git_webhook_requests_total", "result", result); got != want {
			t.Errorf("kas_git_webhook_requests_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if e.kasLog.Contains(webhookSecret) {
		t.Error("kas logged the webhook secret")
	}
	t.Logf("commit → agent receives the set, with a webhook: %v", latencies)
}

// Measures commit → set latency with polling alone and with webhooks, for
// the record (the numbers are logged, not asserted beyond sanity).
func TestWebhookVsPollLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measures poll periods of seconds: not in -short")
	}
	const rounds = 4
	measure := func(t *testing.T, e *env, commit func(int) string, after func()) []time.Duration {
		a := e.dialAgent()
		w := a.watch(t, &rpc.ObjectsToSynchronizeRequest{ProjectId: manifestProject, Globs: []string{"/manifests/a.yaml"}})
		w.next(t, setTimeout)
		var out []time.Duration
		for i := range rounds {
			// Spread commits over the poll period.
			time.Sleep(time.Duration(i) * 230 * time.Millisecond)
			c := commit(i)
			start := time.Now()
			after()
			s := w.next(t, setTimeout)
			if s.commit != c {
				t.Fatalf("set for %s, want %s", s.commit, c)
			}
			out = append(out, s.at.Sub(start))
		}
		return out
	}
	mean := func(ds []time.Duration) time.Duration {
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return sum / time.Duration(len(ds))
	}

	e, repo := newWebhookEnv(t)
	repo.commit("first", manifestTree)
	e.start()
	hooked := measure(t, e, func(i int) string {
		return repo.commit("c", map[string]string{"manifests/a.yaml": fmt.Sprintf("w: %d\n", i)})
	}, func() {
		if code, out := e.postWebhook(gitlabPush("", manifestProject), map[string]string{"X-Gitlab-Token": webhookSecret}); code != 202 {
			t.Fatalf("webhook: %d %v", code, out)
		}
	})

	const period = time.Second
	pe, prepo := newGitOpsEnv(t, func(c *Config) {
		c.Agent.Configuration.PollPeriod = period
		c.Agent.GitOps.PollPeriod = period
	})
	prepo.Commit("first", manifestTree)
	pe.start()
	polled := measure(t, pe, func(i int) string {
		return prepo.Commit("c", map[string]string{"manifests/a.yaml": fmt.Sprintf("p: %d\n", i)})
	}, func() {})

	t.Logf("commit → agent receives the set: webhook mean %v %v; polling every %v mean %v %v", mean(hooked), hooked, period, mean(polled), polled)
	if mean(hooked) >= mean(polled) {
		t.Errorf("webhooks (%v) were not faster than polling every %v (%v)", mean(hooked), period, mean(polled))
	}
}

func TestWebhookDisabled(t *testing.T) {
	e, _ := newGitOpsEnv(t, nil)
	e.start()
	code, out := e.postWebhook(gitlabPush("", manifestProject), map[string]string{"X-Gitlab-Token": "anything"})
	if code != http.StatusNotFound || !strings.Contains(fmt.Sprint(out), "git.webhook_secret_file") {
		t.Errorf("webhook with webhooks disabled: %d %v", code, out)
	}
}

func TestWebhookSecretFileChecked(t *testing.T) {
	for name, content := range map[string]*string{"missing": nil, "empty": new(string)} {
		e, _ := newGitOpsEnv(t, nil)
		e.cfg.Git.WebhookSecretFile = filepath.Join(t.TempDir(), "secret")
		if content != nil {
			if err := os.WriteFile(e.cfg.Git.WebhookSecretFile, []byte(" \n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		logger, _ := tu.NewLogger(t)
		if _, err := New(e.cfg, logger); err == nil || !strings.Contains(err.Error(), "git.webhook_secret_file") {
			t.Errorf("%s secret file: New: %v, want an error naming git.webhook_secret_file", name, err)
		}
	}
}

// counterValue is the value of one labelled series of a counter or gauge.
func counterValue(t *testing.T, e *env, name, label, value string) float64 {
	t.Helper()
	m := tu.Series(t, e.kas.Metrics(), name, label, value)
	if m == nil {
		return -1
	}
	return m.GetCounter().GetValue() + m.GetGauge().GetValue()
}
