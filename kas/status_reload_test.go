package kas

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tu "kubetunnel/internal/testutil"
)

// The status API and the status page say how the last config reload went:
// a broken file names the file, the bad key and why, and that the
// previous config keeps running; a fixed file clears it.
func TestStatusConfigReload(t *testing.T) {
	e := newEnv(t, "ws")
	file := filepath.Join(t.TempDir(), "kas.yaml")
	e.writeConfigFile(file, e.cfg)
	e.startWith(func(s *Server) {
		s.ConfigFile = file
		s.ConfigPollPeriod = 50 * time.Millisecond
	})
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.obsURL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var rep StatusReport
	status := func() StatusReport {
		t.Helper()
		req, _ := http.NewRequest("GET", e.obsURL()+"/api/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rep = StatusReport{}
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /api/v1/status: %s %v", resp.Status, err)
		}
		return rep
	}

	// At start: loaded, no reload yet.
	cr := status().ConfigReload
	if cr == nil || cr.File != file || cr.Result != "" || cr.LastSuccessAt.IsZero() || !cr.LastReloadAt.IsZero() {
		t.Fatalf("config_reload at start: %+v", cr)
	}
	started := cr.LastSuccessAt
	if code, page := get("/"); code != 200 || !strings.Contains(page, "loaded at start") || !strings.Contains(page, file) {
		t.Errorf("status page at start: %d, want the config file and 'loaded at start':\n%s", code, page)
	}

	// A broken file: a user token that is not a hash.
	bad := strings.Replace(mustYAML(t, e.cfg), HashToken(bobToken), "not-a-hash", 1)
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 10*time.Second, "the failed reload in /api/v1/status", func() bool {
		return status().ConfigReload.Result == "failure"
	})
	cr = rep.ConfigReload
	if cr.Key != "users[1].token_sha256[0]" || !strings.Contains(cr.Error, "lowercase hex SHA-256") ||
		cr.LastReloadAt.IsZero() || !cr.LastSuccessAt.Equal(started) || cr.File != file {
		t.Errorf("config_reload after a bad file: %+v, want key users[1].token_sha256[0], the reason, and the start time kept", cr)
	}
	code, page := get("/")
	for _, want := range []string{"last reload failed", "users[1].token_sha256[0]", "lowercase hex SHA-256", "kas keeps running the config loaded", file} {
		if code != 200 || !strings.Contains(page, want) {
			t.Errorf("status page after a bad file: %d, does not say %q:\n%s", code, want, page)
		}
	}
	// The running config stays: alice still signs in (she did above), and
	// kas still serves bob's token.
	if _, err := e.kas.users.AuthenticateUser(t.Context(), bobToken); err != nil {
		t.Errorf("bob after the bad file: %v, want the running config to stay", err)
	}

	// Fixed: the failure is gone.
	e.writeConfigFile(file, e.cfg)
	tu.Eventually(t, 10*time.Second, "the successful reload in /api/v1/status", func() bool {
		return status().ConfigReload.Result == "success"
	})
	if cr = rep.ConfigReload; cr.Key != "" || cr.Error != "" || !cr.LastSuccessAt.After(started) {
		t.Errorf("config_reload after the fix: %+v", cr)
	}
	if code, page := get("/"); code != 200 || !strings.Contains(page, "last reload succeeded") || strings.Contains(page, "users[1]") {
		t.Errorf("status page after the fix: %d:\n%s", code, page)
	}
}
