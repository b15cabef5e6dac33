package kubelet

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// SetPortForward makes port-forwards to podPort (of any pod on this
// kubelet) connect to target, a host:port on this machine, e.g. the address
// of an httptest.Server.
func (k *Kubelet) SetPortForward(podPort int, target string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.portForwards[int32(podPort)] = target
}

func (k *Kubelet) portForwardTarget(port int32) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	target, ok := k.portForwards[port]
	return target, ok
}

func (k *Kubelet) servePortForward(w http.ResponseWriter, r *http.Request) {
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The library hands PortForward a background context; the request's
	// context ends when the client's connection is gone (see connContext)
	// or the kubelet is closed.
	portforward.ServePortForward(w, r, localForwarder{k: k, session: r.Context()}, podName(r), r.PathValue("uid"), opts,
		streamIdleTimeout, portforwardStreamCreationTimeout, portforward.SupportedProtocols)
}

// portforwardStreamCreationTimeout matches the exec default; the
// portforward package has no constant of its own.
const portforwardStreamCreationTimeout = remotecommand.DefaultStreamCreationTimeout

// localForwarder connects each forwarded stream to the target registered
// with SetPortForward.
type localForwarder struct {
	k       *Kubelet
	session context.Context // done when the client's connection is gone
}

func (f localForwarder) PortForward(_ context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	// The library calls this from its own goroutines, outside any tracked
	// handler, with a background context.
	if !f.k.begin() {
		return errClosed
	}
	defer f.k.done()
	target, ok := f.k.portForwardTarget(port)
	if !ok {
		return fmt.Errorf("no target registered for port %d", port)
	}
	var d net.Dialer
	conn, err := d.DialContext(f.session, "tcp", target)
	if err != nil {
		return fmt.Errorf("dial %s for port %d: %w", target, port, err)
	}
	defer conn.Close()
	// When the client is gone, drop the target connection, which ends
	// both copies even if the target never hangs up. A stream read cannot
	// tell: it reports a vanished client as a clean end of input.
	stop := context.AfterFunc(f.session, func() { conn.Close() })
	defer stop()

	// Client to target. When the client closes its side, half-close the
	// target connection so the target sees end of input but can still
	// reply.
	f.k.goTracked(func() {
		_, _ = io.Copy(conn, stream)
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
	})
	// Target to client: ends when the target closes the connection.
	_, _ = io.Copy(stream, conn)
	// Closing the connection (deferred) unblocks a copy still writing to
	// it; one still reading from the client ends when the client closes
	// its side or the session ends, and Close waits for it.
	return nil
}
