package kasproxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestParsePath(t *testing.T) {
	cases := []struct {
		in, agent, rest string
		ok              bool
	}{
		{"/agents/prod/api/v1/pods", "prod", "/api/v1/pods", true},
		{"/agents/prod", "prod", "/", true},
		{"/agents/prod/", "prod", "/", true},
		{"/agents//api", "", "", false},
		{"/api/v1/pods", "", "", false},
		{"/agentsprod/api", "", "", false},
		{"/agents/a%2Fb/api", "", "", false},
	}
	for _, c := range cases {
		agent, rest, ok := ParsePath(c.in)
		if agent != c.agent || rest != c.rest || ok != c.ok {
			t.Errorf("ParsePath(%q) = %q %q %v, want %q %q %v", c.in, agent, rest, ok, c.agent, c.rest, c.ok)
		}
	}
}

// FuzzParsePath: routing never panics, never yields an agent name with a
// slash (which would address another agent's path), and the rest is always
// an absolute path that is a suffix of the input.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/agents/prod/api", "/agents/", "/agents/a/b/c", "/x", "/agents/%00/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		agent, rest, ok := ParsePath(path)
		if !ok {
			return
		}
		if agent == "" || strings.Contains(agent, "/") {
			t.Fatalf("agent %q from %q", agent, path)
		}
		if !strings.HasPrefix(rest, "/") || !strings.HasSuffix(path, strings.TrimPrefix(rest, "/")) {
			t.Fatalf("rest %q from %q", rest, path)
		}
	})
}

func TestVerb(t *testing.T) {
	cases := []struct {
		method, url string
		hdr         map[string]string
		want        string
	}{
		{"GET", "/api/v1/pods", nil, "get"},
		{"GET", "/api/v1/pods?watch=true", nil, "watch"},
		{"GET", "/api/v1/watch/pods", nil, "watch"},
		{"POST", "/api/v1/namespaces/x/pods/p/exec?command=ls", map[string]string{"Upgrade": "websocket"}, "connect"},
		{"POST", "/api/v1/namespaces/x/pods/p/portforward", map[string]string{"Upgrade": "SPDY/3.1"}, "connect"},
		{"POST", "/api/v1/pods", nil, "create"},
		{"PUT", "/x", nil, "update"},
		{"PATCH", "/x", nil, "patch"},
		{"DELETE", "/x", nil, "delete"},
		{"OPTIONS", "/x", nil, "other"},
	}
	for _, c := range cases {
		u, _ := url.Parse(c.url)
		r := &http.Request{Method: c.method, URL: u, Header: http.Header{}}
		for k, v := range c.hdr {
			r.Header.Set(k, v)
		}
		if got := Verb(r); got != c.want {
			t.Errorf("%s %s = %q, want %q", c.method, c.url, got, c.want)
		}
	}
}

func TestFailureLimiter(t *testing.T) {
	l := NewFailureLimiter(3, time.Minute)
	clk := clocktesting.NewFakeClock(time.Now())
	l.now = clk.Now
	for range 3 {
		if !l.Allow("a") {
			t.Fatal("refused before the burst")
		}
		l.Fail("a")
	}
	if l.Allow("a") {
		t.Fatal("allowed after the burst")
	}
	if !l.Allow("b") {
		t.Fatal("another address is limited too")
	}
	clk.Step(time.Minute)
	if l.Allow("a") {
		t.Fatal("allowed again at the window's end, not after it")
	}
	clk.Step(time.Nanosecond)
	if !l.Allow("a") {
		t.Fatal("still limited after the window")
	}
}

// orderedEvents records, in order, the audit lines a handler gets and
// the flushes of a response.
type orderedEvents struct {
	mu     sync.Mutex
	events []string
	header http.Header
}

func (e *orderedEvents) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, s)
}

func (e *orderedEvents) Enabled(context.Context, slog.Level) bool { return true }
func (e *orderedEvents) Handle(_ context.Context, r slog.Record) error {
	e.add("log: " + r.Message)
	return nil
}
func (e *orderedEvents) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e *orderedEvents) WithGroup(string) slog.Handler      { return e }

func (e *orderedEvents) Header() http.Header         { return e.header }
func (e *orderedEvents) WriteHeader(int)             {}
func (e *orderedEvents) Write(p []byte) (int, error) { return len(p), nil }
func (e *orderedEvents) Flush()                      { e.add("flush") }

// A proxied answer is audited before its last flush: when the caller
// has the whole answer, its audit line has gone to the logger, and the
// handler has nothing left to do that would race the caller's next
// request.
func TestAuditedBeforeTheAnswerLeaves(t *testing.T) {
	ev := &orderedEvents{header: http.Header{}}
	small := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	}
	p := New(Config{Users: fakeUsers{}, Tunnels: &recordingTunnel{handler: small}, Logger: slog.New(ev)})
	r := httptest.NewRequest(http.MethodGet, "/agents/prod/api/v1/namespaces/default/configmaps/x", nil)
	r.Header.Set("Authorization", "Bearer alice-token")
	p.ServeHTTP(ev, r)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	want := []string{"log: Proxied request", "flush"}
	if !slices.Equal(ev.events, want) {
		t.Errorf("events %q, want %q", ev.events, want)
	}
}
