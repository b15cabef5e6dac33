package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kubetunnel/agentk/agentktest"
	"kubetunnel/internal/testpki"
	"kubetunnel/internal/testutil"
)

// runMainEnv set makes the test binary run agentk's main with its
// arguments, so that a test runs agentk as a process, as a pod does.
const runMainEnv = "AGENTK_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) != "" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

const saToken = "agentk-service-account-token"

// An agentk Deployment written for GitLab's agent starts this agentk: the
// args and environment of the official gitlab-agent chart's deployment
// template (token file, kasAddress, kasCaCert, observability TLS,
// kasHeaders, POD_NAMESPACE/POD_NAME/SERVICE_ACCOUNT_NAME/OCS_ENABLED),
// with the chart's extraArgs for what a pod gets from its environment
// here: the API server through kubectl's flags, and a loopback port for
// the observability listener. Its probes (/liveness, /readiness) answer
// over TLS, and kas learns the pod's name and namespace.
func TestUpstreamDeploymentArgs(t *testing.T) {
	dir := t.TempDir()
	kas := agentktest.NewKas(t, "glagent-0123456789abcdef")
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+saToken {
			http.Error(w, "not agentk", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"gitVersion":"v1.37.0-fake"}`)
	}))
	t.Cleanup(api.Close)
	apiCA := filepath.Join(dir, "api-ca.crt")
	write(t, apiCA, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw})))

	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	obsCert, obsKey, caFile, err := ca.Issue(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "secrets", "token")
	write(t, tokenFile, "glagent-0123456789abcdef\n")
	obs := testutil.FreeAddr(t)

	args := []string{
		// templates/deployment.yaml of the gitlab-agent chart:
		"--token-file=" + tokenFile,
		"--kas-address=" + kas.Address,
		"--kas-ca-cert-file=" + caFile,
		"--observability-cert-file=" + obsCert,
		"--observability-key-file=" + obsKey,
		"--kas-header", "Cookie: gitlab-canary",
		// extraArgs:
		"--server=" + api.URL, "--token=" + saToken, "--certificate-authority=" + apiCA,
		"--observability-listen-address=" + obs,
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1",
		"POD_NAMESPACE=gitlab-agent", "POD_NAME=gitlab-agent-v2-6d4b9-x7k2p",
		"SERVICE_ACCOUNT_NAME=gitlab-agent", "OCS_ENABLED=true")
	var out testutil.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()

	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	probe := func(path string) (int, string) {
		resp, err := client.Get("https://" + obs + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testutil.EventuallyNoError(t, 20*time.Second, "/readiness to be ok", func() error {
		code, body := probe("/readiness")
		if code == http.StatusOK {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("agentk exited (%v):\n%s", err, out.String())
		default:
		}
		return fmt.Errorf("/readiness = %d %q; agentk log:\n%s", code, body, out.String())
	})
	if code, body := probe("/liveness"); code != http.StatusOK {
		t.Errorf("/liveness = %d %q", code, body)
	}
	h := kas.Hellos()[0]
	if h.PodNamespace != "gitlab-agent" || h.PodName != "gitlab-agent-v2-6d4b9-x7k2p" || h.KubernetesVersion != "v1.37.0-fake" {
		t.Errorf("kas learnt %+v", h)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("agentk exited with %v after SIGTERM:\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("agentk did not stop on SIGTERM:\n%s", out.String())
	}
	if strings.Contains(out.String(), "glagent-0123456789abcdef") || strings.Contains(out.String(), saToken) {
		t.Errorf("a token is in agentk's log:\n%s", out.String())
	}
}

// Misused flags and environment stop agentk at once with a message that
// says what to fix (exit status 2), as GitLab's agentk refuses them.
func TestFlagErrors(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	write(t, tokenFile, "t")
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"token file and AGENTK_TOKEN", "AGENTK_TOKEN=x", []string{"--kas-address=wss://kas/", "--token-file=" + tokenFile}, "both --token-file and AGENTK_TOKEN are set"},
		{"no token", "", []string{"--kas-address=wss://kas/"}, "no agent token: set --token-file or the AGENTK_TOKEN environment variable"},
		{"two CA files", "", []string{"--kas-address=wss://kas/", "--token-file=" + tokenFile, "--ca-cert-file=a", "--kas-ca-cert-file=b"}, "--ca-cert-file and --kas-ca-cert-file name different files"},
		{"unknown flag", "", []string{"--kas-adress=wss://kas/"}, "unknown flag: --kas-adress"},
		{"observability network", "", []string{"--kas-address=wss://kas/", "--token-file=" + tokenFile, "--server=https://127.0.0.1:1", "--observability-listen-network=udp"}, `--observability-listen-network "udp": want tcp, tcp4, tcp6 or unix`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tc.args...)
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Errorf("exit %v, output:\n%s\nwant exit status 2 and %q", err, out, tc.want)
			}
		})
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
