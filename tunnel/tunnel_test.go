package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const goodToken = "s3cret-token"

// testServer runs a tunnel.Server whose sessions echo every stream agentk
// opens, over the transport named by scheme.
type testServer struct {
	srv     *Server
	address string
	caPool  *x509.CertPool
	metrics *ServerMetrics
	stop    func()
}

func startServer(t *testing.T, scheme string) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ts := &testServer{metrics: NewServerMetrics(prometheus.NewRegistry())}
	ts.srv = &Server{
		KasVersion: "v-test",
		Metrics:    ts.metrics,
		Authenticate: func(ctx context.Context, h Hello) (string, error) {
			if h.Token != goodToken {
				return "", &RefusedError{Status: http.StatusUnauthorized, Reason: "unknown agent token"}
			}
			return "agent1", nil
		},
		OnSession: func(ctx context.Context, s *Session) {
			for {
				st, err := s.AcceptStream()
				if err != nil {
					return
				}
				go func() {
					defer st.Close()
					io.Copy(st, st)
				}()
			}
		},
	}
	ts.srv.Start(ctx)
	var wg sync.WaitGroup
	switch scheme {
	case "ws", "wss":
		hs := httptest.NewUnstartedServer(ts.srv)
		if scheme == "wss" {
			hs.StartTLS()
			ts.caPool = x509.NewCertPool()
			ts.caPool.AddCert(hs.Certificate())
		} else {
			hs.Start()
		}
		ts.address = strings.Replace(hs.URL, "http", "ws", 1) + "/"
		ts.stop = func() {
			cancel()
			hs.CloseClientConnections()
			hs.Close()
		}
	case "grpc", "grpcs":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if scheme == "grpcs" {
			hs := httptest.NewUnstartedServer(nil)
			hs.StartTLS() // borrow its self-signed certificate
			cert := hs.TLS.Certificates[0]
			ts.caPool = x509.NewCertPool()
			ts.caPool.AddCert(hs.Certificate())
			hs.Close()
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		}
		ts.address = scheme + "://" + ln.Addr().String()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts.srv.ServeListener(ctx, ln)
		}()
		ts.stop = func() { cancel(); wg.Wait() }
	}
	t.Cleanup(func() {
		ts.stop()
		ts.srv.Wait()
	})
	return ts
}

func (ts *testServer) dialer(token string) *Dialer {
	d := &Dialer{
		Address: ts.address,
		Hello:   Hello{Token: token, AgentVersion: "v-test", Protocol: MaxProtocol},
		Proxy:   func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	if ts.caPool != nil {
		d.TLS = &tls.Config{RootCAs: ts.caPool, ServerName: "example.com"}
	}
	return d
}

func TestConnectEveryTransport(t *testing.T) {
	for _, scheme := range []string{"ws", "wss", "grpc", "grpcs"} {
		t.Run(scheme, func(t *testing.T) {
			ts := startServer(t, scheme)
			sess, err := ts.dialer(goodToken).Dial(context.Background())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer sess.Close()
			// Several concurrent streams, each echoed intact.
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st, err := sess.OpenStream()
					if err != nil {
						t.Errorf("OpenStream: %v", err)
						return
					}
					defer st.Close()
					msg := bytes.Repeat([]byte{byte('a' + i)}, 300_000)
					go st.Write(msg)
					got := make([]byte, len(msg))
					if _, err := io.ReadFull(st, got); err != nil {
						t.Errorf("read echo: %v", err)
						return
					}
					if !bytes.Equal(got, msg) {
						t.Errorf("stream %d: echo differs", i)
					}
				}()
			}
			wg.Wait()
			if v := testutil.ToFloat64(ts.metrics.Handshakes.WithLabelValues("ok")); v != 1 {
				t.Errorf("ok handshakes = %v, want 1", v)
			}
			if v := testutil.ToFloat64(ts.metrics.Bytes.WithLabelValues("from_agent")); v < 8*300_000 {
				t.Errorf("from_agent bytes = %v, want at least %d", v, 8*300_000)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	for _, scheme := range []string{"ws", "grpcs"} {
		t.Run(scheme, func(t *testing.T) {
			ts := startServer(t, scheme)
			cases := []struct {
				name   string
				mutate func(*Dialer)
				status int
				want   string
			}{
				{"bad token", func(d *Dialer) { d.Hello.Token = "wrong" }, 401, "unknown agent token"},
				{"no token", func(d *Dialer) { d.Hello.Token = "" }, 400, "no agent token"},
				{"no protocol", func(d *Dialer) { d.Hello.Protocol = 0 }, 400, "no tunnel protocol version"},
				{"future protocol", func(d *Dialer) { d.Hello.Protocol = MaxProtocol + 1; d.Hello.AgentVersion = "v9.0.0" }, 426, "agentk v9.0.0 speaks tunnel protocol 3; kas v-test serves protocols 1 to 2"},
			}
			for _, c := range cases {
				d := ts.dialer(goodToken)
				c.mutate(d)
				_, err := d.Dial(context.Background())
				var refused *RefusedError
				if !errors.As(err, &refused) {
					t.Fatalf("%s: err = %v, want a RefusedError", c.name, err)
				}
				if refused.Status != c.status || !strings.Contains(refused.Reason, c.want) {
					t.Errorf("%s: got %d %q, want %d containing %q", c.name, refused.Status, refused.Reason, c.status, c.want)
				}
				if strings.Contains(err.Error(), goodToken) {
					t.Errorf("%s: error leaks the token: %v", c.name, err)
				}
			}
		})
	}
}

func TestWrongScheme(t *testing.T) {
	for _, addr := range []string{"https://kas.example.com/", "kas.example.com:8150", "tcp://kas:1"} {
		_, err := (&Dialer{Address: addr}).Dial(context.Background())
		if !errors.Is(err, ErrUnsupportedScheme) || !strings.Contains(err.Error(), "use wss://, ws://, grpcs:// or grpc://") {
			t.Errorf("%s: err = %v", addr, err)
		}
	}
	_, err := (&Dialer{Address: "grpc://kas.example.com"}).Dial(context.Background())
	if err == nil || !strings.Contains(err.Error(), "needs a port") {
		t.Errorf("grpc without port: %v", err)
	}
}

// A WebSocket agent pointed at a raw listener, and the reverse, get an error
// that names the mismatch instead of hanging.
func TestTransportMismatch(t *testing.T) {
	raw := startServer(t, "grpc")
	d := raw.dialer(goodToken)
	d.Address = strings.Replace(raw.address, "grpc://", "ws://", 1) + "/"
	d.HandshakeTimeout = 2 * time.Second
	if _, err := d.Dial(context.Background()); err == nil {
		t.Fatal("ws:// to a raw listener connected")
	}
	ws := startServer(t, "ws")
	d = ws.dialer(goodToken)
	d.Address = strings.Replace(strings.TrimSuffix(ws.address, "/"), "ws://", "grpc://", 1)
	_, err := d.Dial(context.Background())
	if err == nil || !strings.Contains(err.Error(), "websocket: false") {
		t.Fatalf("grpc:// to a WebSocket listener: %v", err)
	}
}

func TestOversizedHello(t *testing.T) {
	ts := startServer(t, "grpc")
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.address, "grpc://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Claim 1 GiB: kas must answer without reading it.
	conn.Write(append(frameMagic[:], 0x40, 0, 0, 0))
	err = ReadReply(conn)
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Status != 400 || !strings.Contains(refused.Reason, "too large") {
		t.Fatalf("got %v", err)
	}
	if v := testutil.ToFloat64(ts.metrics.Handshakes.WithLabelValues("malformed")); v != 1 {
		t.Errorf("malformed handshakes = %v, want 1", v)
	}
}

func TestGarbageOnRawListener(t *testing.T) {
	ts := startServer(t, "grpc")
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.address, "grpc://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	err = ReadReply(conn)
	var refused *RefusedError
	if !errors.As(err, &refused) || !strings.Contains(refused.Reason, "does not start with a tunnel hello") {
		t.Fatalf("got %v", err)
	}
}

func TestHelloNeverPrintsToken(t *testing.T) {
	h := Hello{Token: goodToken, AgentVersion: "v1", Protocol: 1}
	for _, s := range []string{h.String(), fmt.Sprintf("%v %+v %s", h, h, h)} {
		if strings.Contains(s, goodToken) {
			t.Errorf("token printed: %s", s)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "hello", h)
	if strings.Contains(buf.String(), goodToken) {
		t.Errorf("token logged: %s", buf.String())
	}
}
