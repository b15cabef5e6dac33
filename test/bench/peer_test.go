package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/rancher/remotedialer"
	"github.com/sirupsen/logrus"
)

// remotedialer logs through logrus; like our components' slog, it formats
// and discards, so a terminal's speed is not in the numbers.
func init() { logrus.SetOutput(io.Discard) }

// rdClientKey names the one remotedialer client (the "agent").
const rdClientKey = "bench"

// startRemotedialer is the peer: github.com/rancher/remotedialer as
// Rancher uses it. Its server sits behind the same reverse proxy as the
// "proxy" path, which dials the backend through the tunnel
// (Server.Dialer); its client connects out over WebSocket and dials the
// backend over TCP for every stream, as Rancher's cluster agent dials
// kube-apiserver.
func (p *path) startRemotedialer(be *backend, withLink bool) error {
	rd := remotedialer.New(func(r *http.Request) (string, bool, error) {
		id := r.Header.Get("X-Tunnel-ID")
		return id, id == rdClientKey, nil
	}, remotedialer.DefaultErrorWriter)
	dial := rd.Dialer(rdClientKey)
	rp := newFrontProxy(be.addr, func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dial(ctx, "tcp", be.addr)
	})
	p.onStop(func() error { rp.Transport.(*http.Transport).CloseIdleConnections(); return nil })
	mux := http.NewServeMux()
	mux.Handle("/connect", rd)
	mux.Handle("/", rp)
	front, err := p.serveHTTP(mux)
	if err != nil {
		return err
	}
	// The link is on the tunnel, between the remotedialer client and server.
	addr, err := p.via(front, withLink)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = remotedialer.ClientConnectWithOpts(ctx, "ws://"+addr+"/connect", http.Header{"X-Tunnel-ID": {rdClientKey}}, nil,
			func(string, string) bool { return true }, nil, &remotedialer.ConnectOpts{Backoff: remotedialer.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}})
	}()
	p.onStop(func() error { cancel(); <-done; return nil })
	deadline := time.Now().Add(10 * time.Second)
	for !rd.HasSession(rdClientKey) {
		if time.Now().After(deadline) {
			return errors.New("remotedialer client did not connect within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.useHTTP("http://"+front, nil)
	return nil
}
