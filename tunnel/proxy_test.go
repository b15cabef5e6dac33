package tunnel

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// connectProxy is a minimal HTTP CONNECT proxy that records what it tunnels.
type connectProxy struct {
	ln       net.Listener
	connects atomic.Int64
	mu       sync.Mutex // guards conns
	conns    []net.Conn
}

func startConnectProxy(t *testing.T) *connectProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		p.connects.Add(1)
		w.WriteHeader(http.StatusOK)
		down, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, up, down)
		p.mu.Unlock()
		// Copy until either side closes; cleanup closes both.
		// Read through brw: the server may have buffered the client's
		// first bytes already.
		go func() { io.Copy(up, brw); up.Close() }()
		io.Copy(down, up)
		down.Close()
	})}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	t.Cleanup(func() {
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		srv.Close()
		<-served
	})
	return p
}

// HTTPS_PROXY is honoured for every transport: the WebSocket upgrade and
// the raw TCP dial both go through the proxy's CONNECT tunnel.
func TestDialThroughProxy(t *testing.T) {
	for _, scheme := range []string{"ws", "wss", "grpc", "grpcs"} {
		t.Run(scheme, func(t *testing.T) {
			ts := startServer(t, scheme)
			px := startConnectProxy(t)
			d := ts.dialer(goodToken)
			proxyURL := &url.URL{Scheme: "http", Host: px.ln.Addr().String()}
			d.Proxy = func(*http.Request) (*url.URL, error) { return proxyURL, nil }
			sess, err := d.Dial(context.Background())
			if err != nil {
				t.Fatalf("Dial through proxy: %v", err)
			}
			defer sess.Close()
			st, err := sess.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			st.Write([]byte("ping"))
			buf := make([]byte, 4)
			if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("echo through proxy: %q %v", buf, err)
			}
			st.Close()
			if px.connects.Load() != 1 {
				t.Errorf("proxy tunnelled %d connections, want 1", px.connects.Load())
			}
		})
	}
}
