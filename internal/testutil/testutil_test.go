package testutil_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

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
		// Below the ephemeral range, where no outgoing connection or
		// port-0 listener can take it meanwhile.
		_, port, _ := net.SplitHostPort(a)
		if p, _ := strconv.Atoi(port); p < 10000 || p >= ephemeralStart(t) {
			t.Errorf("port %d: want one in [10000, %d)", p, ephemeralStart(t))
		}
		// Free again: a server can bind it.
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("bind %s: %v", a, err)
		}
		ln.Close()
	}
}

func ephemeralStart(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatal(err)
	}
	return n
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

// fatalRecorder is a testing.TB whose Fatalf records the message and
// stops the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventuallyNoErrorNamesTheLastError(t *testing.T) {
	n := 0
	testutil.EventuallyNoError(t, time.Second, "three tries", func() error {
		if n++; n < 3 {
			return fmt.Errorf("try %d", n)
		}
		return nil
	})
	f := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testutil.EventuallyNoError(f, 50*time.Millisecond, "never", func() error { return errors.New("still 2 of 3") })
	}()
	<-done
	if !strings.Contains(f.msg, "waiting for never: still 2 of 3") {
		t.Errorf("failure says %q", f.msg)
	}
	done = make(chan struct{})
	go func() {
		defer close(done)
		testutil.Eventually(f, 50*time.Millisecond, "nothing", func() bool { return false })
	}()
	<-done
	if !strings.HasSuffix(f.msg, "waiting for nothing") {
		t.Errorf("failure says %q", f.msg)
	}
}

// A watch streams its events one at a time: each arrives before the next
// is written, and the stream ends when stop closes.
func TestServeWatch(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		testutil.ServeWatch(w, r, 10*time.Millisecond, stop)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/watch")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	for i := range 3 {
		if !sc.Scan() || sc.Text() != fmt.Sprintf(`{"type":"ADDED","n":%d}`, i) {
			t.Fatalf("event %d: %q %v", i, sc.Text(), sc.Err())
		}
	}
	close(stop)
	for sc.Scan() {
	}
	if err := sc.Err(); err != nil {
		t.Errorf("the stream did not end cleanly: %v", err)
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
