package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"kubetunnel/internal/streamhttp"
	"kubetunnel/tunnel"
)

// abBlock is how many requests one side of an A/B sends before the other
// takes its turn; the sides alternate until each has sent b.N.
const abBlock = 50

// abSide is one side of an A/B: a way to send a GET, and what it cost.
type abSide struct {
	name string
	get  func() error
	cpu  time.Duration
	lat  []time.Duration
}

// runAB sends b.N GETs on each side, abBlock at a time taking turns (the
// side that goes first alternates), and reports each side's CPU time of
// this process per GET (getrusage over its blocks), its p50, and the
// first side's CPU over the second's.
func runAB(b *testing.B, sides [2]*abSide) {
	for _, s := range sides {
		for range 20 { // warm the pools and connections
			if err := s.get(); err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
		}
	}
	b.ResetTimer()
	for done, turn := 0, 0; done < b.N; turn++ {
		n := min(abBlock, b.N-done)
		for i := range 2 {
			s := sides[(turn+i)%2]
			c0 := processCPU(b)
			for range n {
				t0 := time.Now()
				if err := s.get(); err != nil {
					b.Fatalf("%s: %v", s.name, err)
				}
				s.lat = append(s.lat, time.Since(t0))
			}
			s.cpu += processCPU(b) - c0
		}
		done += n
	}
	b.StopTimer()
	for _, s := range sides {
		slices.Sort(s.lat)
		b.ReportMetric(float64(s.cpu.Microseconds())/float64(b.N), s.name+"-cpu-us/get")
		b.ReportMetric(float64(s.lat[len(s.lat)/2].Microseconds()), s.name+"-p50-us")
	}
	b.ReportMetric(float64(sides[0].cpu)/float64(sides[1].cpu), sides[0].name+"/"+sides[1].name+"-cpu")
}

// processCPU is this process's user+system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStreamhttpAB weighs each half of internal/streamhttp against
// net/http in one run, the two taking turns 50 GETs at a time:
//
//   - transport: agentk's short requests to the real kube-apiserver
//     (HTTP/1.1 over TLS, agentk's token, GET of a namespace), on
//     streamhttp.Transport (what agentk uses) against http.Transport
//     limited to HTTP/1.1. The API server is another process, so the
//     CPU per GET is the client transport's alone.
//   - server: protocol 1 on the tunnel (kas's streamhttp.Transport
//     opening yamux streams over WebSocket, as kas does) to agentk's
//     side served by streamhttp.Server (what agentk uses) against
//     http.Server on the same kind of session, the handler answering
//     a namespace-sized JSON object. Both ends are in this process and
//     the client side is the same, so the difference between the two is
//     the servers'.
func BenchmarkStreamhttpAB(b *testing.B) {
	b.Run("transport", benchTransportAB)
	b.Run("server", benchServerAB)
}

func benchTransportAB(b *testing.B) {
	e := sharedProxyEnv(b)
	u, err := url.Parse(e.cp.URL)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(e.cp.CAData) {
		b.Fatal("no CA certificate in the control plane's CA data")
	}
	tlsCfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	td := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tlsCfg}
	sh := &streamhttp.Transport{Dial: func(ctx context.Context) (net.Conn, error) { return td.DialContext(ctx, "tcp", u.Host) }, MaxIdle: 16}
	nh := &http.Transport{TLSClientConfig: tlsCfg.Clone(), MaxIdleConnsPerHost: 16, ForceAttemptHTTP2: false,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	defer sh.CloseIdleConnections()
	defer nh.CloseIdleConnections()
	get := func(rt http.RoundTripper) func() error {
		return func() error {
			req, err := http.NewRequest(http.MethodGet, e.cp.URL+smallObject, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+agentkAPIToken)
			req.Header.Set("Accept", "application/json")
			return readOK(rt.RoundTrip(req))
		}
	}
	runAB(b, [2]*abSide{{name: "streamhttp", get: get(sh)}, {name: "nethttp", get: get(nh)}})
}

// abObject stands for a small API object (a namespace's JSON).
var abObject = `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"default"}}` + strings.Repeat(" ", 780)

func benchServerAB(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Audit-Id", "2b1bd9a3-8c63-4f7e-9a37-4a8f3c7ad0a1")
		_, _ = io.WriteString(w, abObject)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sides := [2]*abSide{{name: "streamhttp"}, {name: "nethttp"}}
	for _, s := range sides {
		serve := func(l net.Listener) error { return (&streamhttp.Server{Handler: h}).Serve(ctx, l) }
		if s.name == "nethttp" {
			serve = func(l net.Listener) error {
				hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
				stop := context.AfterFunc(ctx, func() { hs.Close() })
				defer stop()
				return hs.Serve(l)
			}
		}
		open, stop, err := abTunnel(ctx, serve)
		if err != nil {
			b.Fatal(err)
		}
		defer stop()
		tr := &streamhttp.Transport{Dial: open}
		defer tr.CloseIdleConnections()
		s.get = func() error {
			req, err := http.NewRequest(http.MethodGet, "http://agentk/api/v1/namespaces/default", nil)
			if err != nil {
				return err
			}
			return readOK(tr.RoundTrip(req))
		}
	}
	runAB(b, sides)
}

// abTunnel connects an agent to a kas-side tunnel server over WebSocket
// on loopback (the tunnel package's production settings), serves the
// streams kas opens with serve on the agent's side, and returns how kas
// opens a stream, and a stop that waits for everything to end.
func abTunnel(ctx context.Context, serve func(net.Listener) error) (open func(context.Context) (net.Conn, error), stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	srv, sessions := tunnelServer(ctx)
	ln, err := listenLocal()
	if err != nil {
		cancel()
		return nil, nil, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = hs.Serve(ln) }()
	agentServed := make(chan struct{})
	stopAll := func() {
		cancel()
		hs.Close()
		<-served
		<-agentServed
		srv.Wait()
	}
	d := &tunnel.Dialer{
		Address: "ws://" + ln.Addr().String() + "/",
		Hello:   tunnel.Hello{Token: agentToken, AgentVersion: "bench", Protocol: tunnel.MaxProtocol},
		Logger:  discardLogger(),
	}
	agentSess, err := d.Dial(ctx)
	if err != nil {
		close(agentServed)
		stopAll()
		return nil, nil, err
	}
	go func() {
		defer close(agentServed)
		_ = serve(agentSess)
		agentSess.Close()
	}()
	select {
	case kasSess := <-sessions:
		return func(context.Context) (net.Conn, error) { return kasSess.OpenStream() }, func() { agentSess.Close(); stopAll() }, nil
	case <-time.After(10 * time.Second):
		agentSess.Close()
		stopAll()
		return nil, nil, errors.New("no tunnel session within 10s")
	}
}

// readOK reads a response to its end and wants 200.
func readOK(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.StatusCode}
	}
	return nil
}
