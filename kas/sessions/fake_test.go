package sessions

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"kubetunnel/tunnel/mux"

	"kubetunnel/tunnel"
)

// fakeAgent is agentk's end of a test session: it serves handler on every
// stream kas opens, and counts the GoAway requests kas sends.
type fakeAgent struct {
	yamux   *mux.Session
	goAways atomic.Int32
}

// newTestSession is a registered session of agent over an in-memory yamux
// pair, its agent end serving h (nil: 200 OK to everything).
func newTestSession(t *testing.T, r *Registry, agent string, h http.Handler) (*Session, *fakeAgent) {
	t.Helper()
	server, client := yamuxPair(t)
	fa := &fakeAgent{yamux: client}
	if h == nil {
		h = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == tunnel.GoAwayPath && req.Header.Get(tunnel.HeaderInternal) == tunnel.InternalGoAway {
			fa.goAways.Add(1)
			return
		}
		h.ServeHTTP(w, req)
	})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(client)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	s := r.Add(&tunnel.Session{Agent: agent, Session: server})
	t.Cleanup(func() { r.Remove(s) })
	return s, fa
}

// yamuxPair is a tunnel session's two ends (kas, agentk) over an
// in-memory connection, closed when the test ends.
func yamuxPair(tb testing.TB) (server, client *mux.Session) {
	tb.Helper()
	a, b := net.Pipe()
	server, err := mux.Server(a, nil)
	if err != nil {
		tb.Fatal(err)
	}
	client, err = mux.Client(b, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}

// fakeLimits caps agent-opened streams per session.
type fakeLimits int

func (l fakeLimits) MaxAgentStreamsPerConnection() int { return int(l) }

// fakePeers answers every lookup with replicas (or err).
type fakePeers struct {
	replicas []string
	err      error
	lookups  atomic.Int32
}

func (p *fakePeers) Lookup(context.Context, string) ([]string, error) {
	p.lookups.Add(1)
	return p.replicas, p.err
}
