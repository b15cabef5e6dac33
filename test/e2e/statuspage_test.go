package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubetunnel/internal/testutil/metrics"
	"kubetunnel/internal/testutil/stack"
)

var statusScreenshot = flag.String("status-screenshot", "", "also save the status page's screenshot to this file (docs/img/status-page.png)")

// chromium runs Debian's headless Chromium with args and returns stdout.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (apt-get install -y chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return string(out)
}

// visibleText is the text a person reads in a DOM dump: tags dropped,
// whitespace collapsed.
func visibleText(dom string) string {
	dom = regexp.MustCompile(`(?s)<style.*?</style>`).ReplaceAllString(dom, " ")
	dom = regexp.MustCompile(`<[^>]*>`).ReplaceAllString(dom, " ")
	return strings.Join(strings.Fields(dom), " ")
}

// The status page, in a real browser: without a token it asks for one;
// with alice's token (sent by a loopback proxy standing in for a browser
// session) it shows the agent, its agentk connection and version, the
// config commit, and the manifest project's commit, result and object
// counts. The login form's cookie gives the same page. `kas agents`
// shows the same data from the same kas. A failed sync shows when agentk
// retries it.
func TestStatusPageInBrowser(t *testing.T) {
	ns := namespace(t)
	s := newStackWith(t, stack.Options{}, gitopsConfig(ns))
	c, err := s.Commit("one configmap", map[string]string{"manifests/a.yaml": configMap("cm-a", "1")})
	if err != nil {
		t.Fatal(err)
	}
	waitSync(t, s, c, "synced")
	page := "http://" + s.ObsAddr + "/"

	login := visibleText(chromium(t, "--dump-dom", page))
	if !strings.Contains(login, "Sign in with your token") || strings.Contains(login, stack.AgentName+" · connected") {
		t.Fatalf("without a token the page should ask for one and show no agent; it shows:\n%s", login)
	}

	target, _ := url.Parse("http://" + s.ObsAddr)
	rp := httputil.NewSingleHostReverseProxy(target)
	director := rp.Director
	rp.Director = func(r *http.Request) {
		director(r)
		r.Header.Set("Authorization", "Bearer "+s.UserToken)
	}
	front := httptest.NewServer(rp)
	defer front.Close()

	text := visibleText(chromium(t, "--dump-dom", front.URL+"/"))
	for _, want := range []string{
		"kas status",
		"signed in as alice",
		stack.AgentName + " · connected (1 connection)",
		"v0.1.0-dev", // agentk version
		"config: " + stack.ConfigProject + " commit",
		stack.ConfigProject,   // the manifest project
		c[:12] + " " + c[:12], // sent and synced commit
		"synced",
		"1 / 0 / 0", // applied / pruned / unchanged
		"config file " + s.KasConfig, "loaded at start", "not reloaded since",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page lacks %q; it reads:\n%s", want, text)
		}
	}
	shot := filepath.Join(t.TempDir(), "status.png")
	chromium(t, "--window-size=1200,620", "--hide-scrollbars", "--screenshot="+shot, front.URL+"/")
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10_000 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	if *statusScreenshot != "" {
		if err := os.WriteFile(*statusScreenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The login form: a bad token is refused with a reason, alice's sets a
	// cookie that shows the page.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(page+"login", url.Values{"token": {"not-a-token"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "unknown token") {
		t.Errorf("login with a bad token: %s %s", resp.Status, body)
	}
	resp, err = noRedirect.PostForm(page+"login", url.Values{"token": {s.UserToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].HttpOnly {
		t.Fatalf("login with alice's token: %s, cookies %v", resp.Status, cookies)
	}
	req, _ := http.NewRequest(http.MethodGet, page, nil)
	req.AddCookie(cookies[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(visibleText(string(body)), stack.AgentName+" · connected") {
		t.Errorf("page with the login cookie: %s\n%s", resp.Status, body)
	}

	// The JSON behind it needs the token too.
	resp, err = http.Get(page + "api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/api/v1/status without a token: %s", resp.Status)
	}

	// The per-agent connection gauge agrees.
	if v, _ := metrics.MustScrape(t, page+"metrics").Value("kas_agent_connections", "agent", stack.AgentName); v != 1 {
		t.Errorf("kas_agent_connections{agent=%q} is %v, want 1", stack.AgentName, v)
	}

	// kas agents, against the same kas.
	tokenFile := filepath.Join(t.TempDir(), "alice.token")
	if err := os.WriteFile(tokenFile, []byte(s.UserToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kasBin := filepath.Join(s.BinDir, "kas")
	out := runBin(t, 0, kasBin, "agents", "--config", s.KasConfig, "--token-file", tokenFile)
	row := regexp.MustCompile(`(?m)^` + stack.AgentName + `\s+1\s+v0\.1\.0-dev\s+\S+\s+[0-9a-f]{12}\s+1/1 synced$`)
	if !strings.HasPrefix(out, "NAME ") || !row.MatchString(out) {
		t.Errorf("kas agents:\n%s", out)
	}
	out = runBin(t, 0, kasBin, "agents", "--server", "http://"+s.ObsAddr, "--token-file", tokenFile, "-o", "json")
	var rep struct {
		User   string
		Agents []struct {
			Name     string
			Sessions []struct {
				AgentkVersion string `json:"agentk_version"`
			}
			Projects []struct {
				LastSync struct {
					CommitID string `json:"commit_id"`
				} `json:"last_sync"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.User != "alice" || len(rep.Agents) != 1 ||
		len(rep.Agents[0].Sessions) != 1 || rep.Agents[0].Projects[0].LastSync.CommitID != c {
		t.Errorf("kas agents -o json (%v):\n%s", err, out)
	}
	out = runBin(t, 0, kasBin, "agents", "describe", stack.AgentName, "--server", "http://"+s.ObsAddr, "--token-file", tokenFile)
	for _, want := range []string{"Name:            " + stack.AgentName, "Connections:     1", "agentk v0.1.0-dev from 127.0.0.1:", "last sync:     synced of " + c, "objects:       1 applied, 0 pruned, 0 unchanged"} {
		if !strings.Contains(out, want) {
			t.Errorf("kas agents describe lacks %q:\n%s", want, out)
		}
	}
	out = runBin(t, 1, kasBin, "agents", "describe", "nope", "--server", "http://"+s.ObsAddr, "--token-file", tokenFile)
	if !strings.Contains(out, `has no agent "nope" that alice may see`) {
		t.Errorf("describe of an unknown agent:\n%s", out)
	}
	out = runBin(t, 1, kasBin, "agents", "--server", "http://"+s.ObsAddr)
	if !strings.Contains(out, "answered 401") || !strings.Contains(out, "pass --token-file") {
		t.Errorf("kas agents without a token:\n%s", out)
	}

	// A sync that fails and is retried (an object made by hand is not
	// taken over): the page says when agentk tries again.
	cms := cp.Clientset().CoreV1().ConfigMaps(ns)
	if _, err := cms.Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm-hand"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c2, err := s.Commit("claim cm-hand", map[string]string{"manifests/hand.yaml": configMap("cm-hand", "git")})
	if err != nil {
		t.Fatal(err)
	}
	waitSync(t, s, c2, "failed")
	text = visibleText(chromium(t, "--dump-dom", front.URL+"/"))
	retry := regexp.MustCompile(c2[:12] + ` failed .*cm-hand.* (in [0-9hms.]+|now) \(attempt [1-9][0-9]* failed\) [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}Z`)
	if !strings.Contains(text, "last sync next retry") || !retry.MatchString(text) {
		t.Errorf("the page does not say when the failed sync of %s is retried; it reads:\n%s", c2[:12], text)
	}
}

// runBin runs bin with args, wants exit code, and returns its combined output.
func runBin(t *testing.T, code int, bin string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if got != code {
		t.Fatalf("%s %s: exit %d, want %d\n%s", filepath.Base(bin), strings.Join(args, " "), got, code, out)
	}
	return string(out)
}
