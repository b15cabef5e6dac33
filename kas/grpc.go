package kas

import (
	"context"
	"errors"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"

	"kubetunnel/kas/identity"
)

// streamListener hands streams that agents open to one grpc.Server. Each
// conn carries the session it came from, which agentCreds turns into the
// peer's AuthInfo so a handler knows which agent is calling.
type streamListener struct {
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

var _ net.Listener = (*streamListener)(nil)

func newStreamListener() *streamListener {
	return &streamListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver passes conn to the gRPC server, or closes it if the listener is
// closed or ctx ends first.
func (l *streamListener) deliver(ctx context.Context, conn net.Conn) {
	select {
	case l.conns <- conn:
	case <-l.done:
		conn.Close()
	case <-ctx.Done():
		conn.Close()
	}
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return tunnelAddr{} }

type tunnelAddr struct{}

func (tunnelAddr) Network() string { return "tunnel" }
func (tunnelAddr) String() string  { return "tunnel" }

// agentConn is a stream from an agent, tagged with the agent.
type agentConn struct {
	net.Conn
	agent Agent
}

// agentCreds authenticates nothing itself (the tunnel handshake did): it
// only lifts the agent identity from the stream into the gRPC peer.
type agentCreds struct{}

var _ credentials.TransportCredentials = agentCreds{}

func (agentCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("agentCreds is server-side only")
}

func (agentCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	ac, ok := c.(*agentConn)
	if !ok {
		return nil, nil, errors.New("connection did not come through the agent tunnel")
	}
	return c, identity.Info{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, Agent: ac.agent}, nil
}

func (agentCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "kas-tunnel"}
}
func (c agentCreds) Clone() credentials.TransportCredentials { return c }
func (agentCreds) OverrideServerName(string) error           { return nil }
