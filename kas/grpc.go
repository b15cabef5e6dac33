package kas

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"

	"kubetunnel/kas/identity"
)

// tunnelAddr is the address of kas's gRPC listener (Server.grpcLn, an
// httpserve.ConnListener): the streams agents open to it. Each conn
// carries the session it came from, which agentCreds turns into the
// peer's AuthInfo so a handler knows which agent is calling.
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
