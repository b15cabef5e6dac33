package testutil_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"kubetunnel/internal/testutil"
)

func TestFreeAddrs(t *testing.T) {
	addrs, err := testutil.FreeAddrs(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] || !strings.HasPrefix(a, "127.0.0.1:") {
			t.Fatalf("addresses %v: want five distinct loopback addresses", addrs)
		}
		seen[a] = true
		// Free again: a server can bind it.
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("bind %s: %v", a, err)
		}
		ln.Close()
	}
}

func TestDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		body, _ := io.ReadAll(r.Body)
		w.Write([]byte(r.Method + " " + r.Header.Get("X-Test") + " " + string(body)))
	}))
	defer srv.Close()
	code, body := testutil.Do(t, http.MethodPost, srv.URL, strings.NewReader("hi"), map[string]string{"X-Test": "yes"})
	if code != http.StatusTeapot || string(body) != "POST yes hi" {
		t.Errorf("got %d %q", code, body)
	}
}

func TestSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"repository"})
	reg.MustRegister(c)
	c.WithLabelValues("a").Add(3)
	if m := testutil.Series(t, reg, "x_total", "repository", "a"); m == nil || m.GetCounter().GetValue() != 3 {
		t.Errorf("series a: %v", m)
	}
	if m := testutil.Series(t, reg, "x_total", "repository", "b"); m != nil {
		t.Errorf("series b: %v, want none", m)
	}
}
