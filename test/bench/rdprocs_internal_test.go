package bench

import (
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRemotedialerProcesses checks, in a second or two, the remotedialer
// server and agent processes BenchmarkGetLatencyProcesses runs: a GET
// through them reaches a TLS backend standing in for the API server, with
// the server's token, and both processes exit when told to.
func TestRemotedialerProcesses(t *testing.T) {
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+agentkAPIToken {
			http.Error(w, "wrong token", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "reached "+r.URL.Path)
	}))
	defer api.Close()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	server, addrs, err := startRdProc("server "+api.URL+" "+caFile, true)
	if err != nil {
		t.Fatal(err)
	}
	front, connect, ok := strings.Cut(addrs, " ")
	if !ok || front != connect {
		t.Fatalf("server printed %q, want its address twice", addrs)
	}
	agent, _, err := startRdProc("agent "+connect, false)
	if err != nil {
		t.Fatal(errors.Join(err, server.stop()))
	}
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Get("http://" + front + "/api/v1/x")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				body = string(b)
				break
			}
			err = &statusError{resp.StatusCode}
		}
		if time.Now().After(deadline) {
			t.Errorf("no GET through the remotedialer processes in 20 s: %v", err)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != "" && body != "reached /api/v1/x" {
		t.Errorf("GET through remotedialer: %q, want %q", body, "reached /api/v1/x")
	}
	if err := agent.stop(); err != nil {
		t.Errorf("agent: %v", err)
	}
	if err := server.stop(); err != nil {
		t.Errorf("server: %v", err)
	}
}
