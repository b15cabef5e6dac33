package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Kubelet is a stand-in kubelet serving the kubelet API paths that
// kube-apiserver proxies to: /exec, /attach, /portForward and /containerLogs.
type Kubelet struct {
	// Addr is the host:port the server listens on (127.0.0.1:<port>).
	Addr string
	// Port is the port in Addr; RegisterNode advertises it in the Node status.
	Port int

	logf     func(string, ...any)
	listener *trackingListener
	server   *http.Server
	serveErr chan error
	// baseCtx is the parent of every request context; cancelling it on
	// Close ends exec'd processes, attach loops and followed logs.
	baseCtx context.Context
	cancel  context.CancelFunc
	// active counts handlers and port-forward copies so Close can wait for
	// them: they outlive http.Server.Close once connections are hijacked.
	active sync.WaitGroup
	// sessions mirrors active's count, which WaitGroup does not expose.
	sessions atomic.Int64

	mu           sync.Mutex
	nodeName     string
	portForwards map[int32]string
	logLines     []string
	logInterval  time.Duration
	closed       bool
}

// Start listens on a random loopback port with a self-signed certificate
// and serves until Close. ctx only bounds the start-up; logf (may be nil)
// receives one line per request.
func Start(ctx context.Context, logf func(string, ...any)) (*Kubelet, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cert, err := selfSignedCert()
	if err != nil {
		return nil, fmt.Errorf("stand-in kubelet certificate: %w", err)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("stand-in kubelet listen: %w", err)
	}
	k := &Kubelet{
		Addr:         l.Addr().String(),
		Port:         l.Addr().(*net.TCPAddr).Port,
		logf:         logf,
		listener:     newTrackingListener(l),
		serveErr:     make(chan error, 1),
		portForwards: make(map[int32]string),
		logLines:     []string{"stand-in kubelet log line 1", "stand-in kubelet log line 2", "stand-in kubelet log line 3"},
		logInterval:  200 * time.Millisecond,
	}
	k.baseCtx, k.cancel = context.WithCancel(context.Background())
	k.server = &http.Server{
		Handler:     k.routes(),
		BaseContext: func(net.Listener) context.Context { return k.baseCtx },
		ConnContext: connContext,
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}},
		// SPDY upgrades need HTTP/1.1; an empty map turns HTTP/2 off.
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logWriter{logf}, "stand-in kubelet http: ", 0),
	}
	go func() {
		k.serveErr <- k.server.ServeTLS(k.listener, "", "")
	}()
	logf("stand-in kubelet listening on https://%s", k.Addr)
	return k, nil
}

// Close stops the server, ends every session and waits for all of its
// goroutines, so tests can check for leaks right after.
func (k *Kubelet) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	k.mu.Unlock()

	k.cancel()
	err := k.server.Close()
	k.listener.closeAll()
	if serveErr := <-k.serveErr; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("stand-in kubelet serve: %w", serveErr))
	}
	done := make(chan struct{})
	go func() {
		k.active.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		err = errors.Join(err, errors.New("stand-in kubelet: sessions still running 10s after close"))
	}
	return err
}

var errClosed = errors.New("stand-in kubelet is closed")

// begin counts a new session unless Close has started. Holding mu makes
// every Add from a zero count happen before Close's Wait, as WaitGroup
// requires.
func (k *Kubelet) begin() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return false
	}
	k.add()
	return true
}

func (k *Kubelet) add() {
	k.sessions.Add(1)
	k.active.Add(1)
}

func (k *Kubelet) done() {
	k.sessions.Add(-1)
	k.active.Done()
}

// Active returns how many requests and streaming goroutines are still
// running. Tests use it to check that a session ends when its client goes
// away rather than only when the kubelet is closed.
func (k *Kubelet) Active() int {
	return int(k.sessions.Load())
}

// track wraps a handler so Close waits for it.
func (k *Kubelet) track(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !k.begin() {
			http.Error(w, errClosed.Error(), http.StatusServiceUnavailable)
			return
		}
		defer k.done()
		k.logf("stand-in kubelet: %s %s", r.Method, r.URL)
		h(w, r)
	}
}

// goTracked runs f in a goroutine that Close waits for. Only call it
// while holding a count from begin: an Add above zero may race with Wait.
func (k *Kubelet) goTracked(f func()) {
	k.add()
	go func() {
		defer k.done()
		f()
	}()
}

// logWriter sends net/http's internal error log to logf.
type logWriter struct{ logf func(string, ...any) }

func (w logWriter) Write(p []byte) (int, error) {
	w.logf("%s", p)
	return len(p), nil
}
