package logging

import (
	"bytes"
	"log"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/grpclog"
	"k8s.io/klog/v2"

	"kubetunnel/internal/testutil"
)

// Repeats logs every failure (the handler summarises) and counts the
// run of one failure for the line that ends it.
func TestRepeatsCounts(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	var r Repeats
	for range 3 {
		r.Log(l, slog.LevelError, "k1", "kas refused the connection", "reason", "bad token")
	}
	r.Log(l, slog.LevelWarn, "k2", "Cannot connect to kas")
	r.Log(l, slog.LevelWarn, "k2", "Cannot connect to kas")
	if n := strings.Count(buf.String(), "\n"); n != 5 {
		t.Errorf("%d lines, want 5:\n%s", n, buf.String())
	}
	if n := r.Reset(); n != 2 {
		t.Errorf("Reset = %d, want 2 (the run of k2)", n)
	}
	if n := r.Reset(); n != 0 {
		t.Errorf("second Reset = %d, want 0", n)
	}
}

func TestStdlibWriter(t *testing.T) {
	var buf bytes.Buffer
	l := log.New(&stdlibWriter{l: slog.New(slog.NewJSONHandler(&buf, nil))}, "", 0)
	l.Printf("http: TLS handshake error from 127.0.0.1:5555: EOF")
	if s := buf.String(); !strings.Contains(s, `"level":"WARN","msg":"TLS handshake failed","component":"stdlib","remote":"127.0.0.1:5555","err":"EOF"`) {
		t.Errorf("got %s", s)
	}
}

// After RouteLibraries, klog, gRPC's logger and the log package write
// JSON records through the logger, tagged with their component.
func TestRouteLibraries(t *testing.T) {
	var buf testutil.Buffer
	l, flush, err := New(&buf, FormatJSON, slog.LevelDebug)
	if err != nil {
		t.Fatal(err)
	}
	defer flush()
	RouteLibraries(l)
	klog.InfoS("from client-go", "k", "v")
	grpclog.Errorf("from grpc %d", 1)
	log.Printf("plain stdlib line")
	log.Printf("http: superfluous response.WriteHeader call")
	log.Printf("http: TLS handshake error from 127.0.0.1:5555: EOF")
	out := buf.String()
	for _, want := range []string{
		`"msg":"from client-go","component":"klog"`,
		`"level":"ERROR","msg":"from grpc 1","component":"grpc"`,
		`"level":"INFO","msg":"plain stdlib line","component":"stdlib"`,
		`"level":"WARN","msg":"HTTP server: superfluous response.WriteHeader call","component":"net/http"}`,
		`"level":"WARN","msg":"TLS handshake failed","component":"stdlib","remote":"127.0.0.1:5555","err":"EOF"}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
	// Each record names its component once (a JSON reader keeps one).
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if n := strings.Count(line, `"component":`); n != 1 {
			t.Errorf("%d component keys in %s", n, line)
		}
	}
}
