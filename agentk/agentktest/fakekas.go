// Package agentktest is a stand-in kas for agentk's tests: the real tunnel
// server and a real gRPC server on the agent's streams, with the config
// it hands out set by the test, and a way to send agentk requests as kas
// does. It is for tests only.
package agentktest

import (
	"bufio"
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"kubetunnel/api/rpc"
	"kubetunnel/tunnel"
)

// AgentName is the name the fake kas gives the agent.
const AgentName = "test-agent"

// Kas accepts agentk connections with one token over WebSocket.
type Kas struct {
	// Address is agentk's --kas-address.
	Address string

	t      testing.TB
	srv    *httptest.Server
	tunnel *tunnel.Server

	mu       sync.Mutex // guards the fields below
	sessions []*tunnel.Session
	hellos   []tunnel.Hello
	config   *rpc.ConfigurationResponse
	changed  chan struct{} // closed and replaced when sessions or config change
}

// NewKas starts a fake kas that accepts token; it stops when the test ends.
func NewKas(t testing.TB, token string) *Kas {
	k := &Kas{t: t, changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	k.tunnel = &tunnel.Server{
		Authenticate: func(_ context.Context, h tunnel.Hello) (string, error) {
			k.mu.Lock()
			k.hellos = append(k.hellos, h)
			k.mu.Unlock()
			if subtle.ConstantTimeCompare([]byte(h.Token), []byte(token)) != 1 {
				return "", &tunnel.RefusedError{Status: http.StatusUnauthorized, Reason: "unknown agent token"}
			}
			return AgentName, nil
		},
		OnSession:  k.serve,
		KasVersion: "fake",
	}
	k.tunnel.Start(ctx)
	k.srv = httptest.NewServer(k.tunnel)
	k.Address = "ws://" + k.srv.Listener.Addr().String() + "/"
	t.Cleanup(func() {
		k.srv.CloseClientConnections()
		k.srv.Close()
		cancel()
		k.tunnel.Wait()
	})
	return k
}

// serve runs the gRPC services on the streams the agent opens, until the
// session ends.
func (k *Kas) serve(ctx context.Context, s *tunnel.Session) {
	gs := grpc.NewServer()
	rpc.RegisterConfigurationServer(gs, configServer{k: k})
	k.mu.Lock()
	k.sessions = append(k.sessions, s)
	k.notifyLocked()
	k.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(s)
	}()
	select {
	case <-s.CloseChan():
	case <-ctx.Done():
	}
	gs.Stop()
	s.Close()
	<-done
	k.mu.Lock()
	for i, x := range k.sessions {
		if x == s {
			k.sessions = append(k.sessions[:i], k.sessions[i+1:]...)
			break
		}
	}
	k.notifyLocked()
	k.mu.Unlock()
}

func (k *Kas) notifyLocked() {
	close(k.changed)
	k.changed = make(chan struct{})
}

// SetConfig is what GetConfiguration sends next, to every agent.
func (k *Kas) SetConfig(resp *rpc.ConfigurationResponse) {
	k.mu.Lock()
	k.config = resp
	k.notifyLocked()
	k.mu.Unlock()
}

// Hellos returns the handshakes received so far.
func (k *Kas) Hellos() []tunnel.Hello {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]tunnel.Hello(nil), k.hellos...)
}

// Session waits for a connected agent session.
func (k *Kas) Session(timeout time.Duration) *tunnel.Session {
	k.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		k.mu.Lock()
		ch := k.changed
		var s *tunnel.Session
		if n := len(k.sessions); n > 0 {
			s = k.sessions[n-1]
		}
		k.mu.Unlock()
		if s != nil {
			return s
		}
		select {
		case <-ch:
		case <-deadline.C:
			k.t.Fatalf("no agent connected within %v", timeout)
		}
	}
}

// Sessions is the number of live agent sessions.
func (k *Kas) Sessions() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.sessions)
}

// Do sends req to the agent over a new stream of s, as kas sends proxied
// requests and its own (GoAway), and returns the response with its body
// read.
func (k *Kas) Do(s *tunnel.Session, req *http.Request) (*http.Response, string) {
	k.t.Helper()
	conn, err := s.Open()
	if err != nil {
		k.t.Fatalf("open a stream to the agent: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(conn); err != nil {
		k.t.Fatalf("send %s %s: %v", req.Method, req.URL, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		k.t.Fatalf("read the answer to %s %s: %v", req.Method, req.URL, err)
	}
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	resp.Body.Close()
	return resp, b.String()
}

// ProxyRequest is a caller's request as kas forwards it: the path on the
// cluster's API server and the caller's identity headers.
func ProxyRequest(method, path, user string, groups ...string) *http.Request {
	req, _ := http.NewRequest(method, "http://agentk"+path, nil)
	req.Header.Set(tunnel.HeaderProxyUser, user)
	for _, g := range groups {
		req.Header.Add(tunnel.HeaderProxyGroup, g)
	}
	return req
}

type configServer struct {
	rpc.UnimplementedConfigurationServer
	k *Kas
}

func (c configServer) GetConfiguration(req *rpc.ConfigurationRequest, stream rpc.Configuration_GetConfigurationServer) error {
	last := req.CommitId
	for {
		c.k.mu.Lock()
		cfg, ch := c.k.config, c.k.changed
		c.k.mu.Unlock()
		if cfg != nil && cfg.CommitId != last {
			if err := stream.Send(cfg); err != nil {
				return err
			}
			last = cfg.CommitId
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-ch:
		}
	}
}

var _ net.Listener = (*tunnel.Session)(nil)
