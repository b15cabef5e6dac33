package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/client-go/rest"

	"kubetunnel/tunnel"
)

// Path names. The report (test/bench/report) knows them by these names.
const (
	pathTCP          = "tcp"          // raw TCP copy: the physical limit
	pathWebSocket    = "websocket"    // one WebSocket connection per request stream (gorilla/websocket), no yamux
	pathYamuxTCP     = "yamux-tcp"    // our tunnel package over raw TCP (grpc://), streams of bytes
	pathYamuxWS      = "yamux-ws"     // our tunnel package over WebSocket (ws://), streams of bytes
	pathDirect       = "direct"       // HTTP client → backend
	pathProxy        = "proxy"        // HTTP client → reverse proxy → backend
	pathKasWS        = "kas-ws"       // client → kas → WebSocket tunnel → agentk → backend
	pathKasTCP       = "kas-tcp"      // the same over the raw TCP transport (grpc://)
	pathRemotedialer = "remotedialer" // client → reverse proxy → remotedialer → backend
)

// ladderPaths is every path, cheapest first; httpPaths those that carry
// HTTP requests from a client to the backend.
var (
	ladderPaths = []string{pathTCP, pathWebSocket, pathYamuxTCP, pathYamuxWS, pathDirect, pathProxy, pathKasWS, pathKasTCP, pathRemotedialer}
	httpPaths   = []string{pathDirect, pathProxy, pathKasWS, pathKasTCP, pathRemotedialer}
)

// path is one way from the benchmark's client to a backend that answers
// a request for n bytes with n bytes.
type path struct {
	name string
	// get asks for n bytes and returns the answer's body.
	get func(ctx context.Context, n int64) (io.ReadCloser, error)
	// link is the relay on the path's long hop, when the path has one.
	link *link
	// stops stop what the path started, in reverse order.
	stops []func() error
}

func (p *path) onStop(f func() error) { p.stops = append(p.stops, f) }

func (p *path) stop() error {
	var errs []error
	for _, f := range slices.Backward(p.stops) {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

// fetch gets n bytes and reads them all.
func (p *path) fetch(ctx context.Context, n int64) error {
	body, err := p.get(ctx, n)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	got, err := io.Copy(io.Discard, body)
	body.Close()
	if err == nil && got != n {
		err = fmt.Errorf("got %d bytes, want %d", got, n)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	return nil
}

// setRTT sets the added round-trip time on the path's link.
func (p *path) setRTT(d time.Duration) {
	if p.link != nil {
		p.link.setRTT(d)
	}
}

// startPaths starts the named paths against be. withLink puts a delay
// link on each path's long hop.
func startPaths(be *backend, names []string, withLink bool) (_ []*path, err error) {
	var ps []*path
	defer func() {
		if err != nil {
			for _, p := range ps {
				err = errors.Join(err, p.stop())
			}
		}
	}()
	for _, name := range names {
		p := &path{name: name}
		ps = append(ps, p)
		if err := p.start(be, withLink); err != nil {
			return nil, fmt.Errorf("starting path %s: %w", name, err)
		}
		// Warm up: connections, streams and pools exist before any clock
		// runs, and a path that cannot carry a request fails here.
		if err := warmPath(p); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

func stopPaths(ps []*path) error {
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.stop())
	}
	return errors.Join(errs...)
}

// warmPath sends a few requests, some concurrently, through p.
func warmPath(p *path) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 20 {
		if err := p.fetch(ctx, smallSize); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			for range 10 {
				if err := p.fetch(ctx, smallSize); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// via returns the address to dial for target: a new link to it when
// withLink, else target itself.
func (p *path) via(target string, withLink bool) (string, error) {
	if !withLink {
		return target, nil
	}
	l, err := newLink(target)
	if err != nil {
		return "", err
	}
	p.link = l
	p.onStop(l.close)
	return l.addr(), nil
}

func (p *path) start(be *backend, withLink bool) error {
	switch p.name {
	case pathTCP:
		return p.startTCP(withLink)
	case pathWebSocket:
		return p.startWebSocket(withLink)
	case pathYamuxTCP:
		return p.startYamux(withLink, false)
	case pathYamuxWS:
		return p.startYamux(withLink, true)
	case pathDirect:
		addr, err := p.via(be.addr, withLink)
		if err != nil {
			return err
		}
		p.useHTTP("http://"+addr, nil)
		return nil
	case pathProxy:
		return p.startProxy(be, withLink)
	case pathKasWS:
		return p.startKas(be, withLink, true)
	case pathKasTCP:
		return p.startKas(be, withLink, false)
	case pathRemotedialer:
		return p.startRemotedialer(be, withLink)
	}
	return fmt.Errorf("unknown path %q", p.name)
}

// maxStreams bounds a client's connections per host (and so kas's
// streams): more than the 1,000 concurrent streams of BenchmarkStreams.
const maxStreams = 1100

// newClientTransport is every HTTP path's client: keep-alive connections,
// enough idle ones for the concurrency benchmarks, no compression.
func newClientTransport() *http.Transport {
	return &http.Transport{
		MaxIdleConns:        maxStreams,
		MaxIdleConnsPerHost: maxStreams,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
	}
}

// useHTTP makes p an HTTP client of base (with hdr on every request).
func (p *path) useHTTP(base string, hdr http.Header) {
	tr := newClientTransport()
	client := &http.Client{Transport: tr}
	p.onStop(func() error { tr.CloseIdleConnections(); return nil })
	p.get = func(ctx context.Context, n int64) (io.ReadCloser, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/bytes?n="+strconv.FormatInt(n, 10), nil)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return nil, fmt.Errorf("status %d: %s", resp.StatusCode, msg)
		}
		return resp.Body, nil
	}
}

// usePool makes p a byte-protocol client over pool.
func (p *path) usePool(pool *connPool) {
	p.onStop(pool.close)
	p.get = pool.get
}

func listenLocal() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func (p *path) startTCP(withLink bool) error {
	ln, err := listenLocal()
	if err != nil {
		return err
	}
	srv := serveByteListener(ln)
	p.onStop(srv.stop)
	addr, err := p.via(ln.Addr().String(), withLink)
	if err != nil {
		return err
	}
	p.usePool(newConnPool(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}))
	return nil
}

// serveHTTP serves h on a new loopback listener until the path stops.
func (p *path) serveHTTP(h http.Handler) (string, error) {
	ln, err := listenLocal()
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	p.onStop(func() error {
		err := srv.Close()
		<-done
		return err
	})
	return ln.Addr().String(), nil
}

// startWebSocket is WebSocket alone: gorilla/websocket, the library of
// the tunnel (and of remotedialer), with the tunnel's buffer sizes, one
// connection per stream and no yamux.
func (p *path) startWebSocket(withLink bool) error {
	var conns sync.WaitGroup
	p.onStop(func() error { conns.Wait(); return nil })
	up := &websocket.Upgrader{WriteBufferSize: 64 << 10}
	addr, err := p.serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		conns.Add(1)
		defer conns.Done()
		serveBytes(&wsNetConn{Conn: c})
	}))
	if err != nil {
		return err
	}
	if addr, err = p.via(addr, withLink); err != nil {
		return err
	}
	d := &websocket.Dialer{ReadBufferSize: 32 << 10, WriteBufferSize: 64 << 10}
	p.usePool(newConnPool(func(ctx context.Context) (net.Conn, error) {
		c, _, err := d.DialContext(ctx, "ws://"+addr+"/", nil)
		if err != nil {
			return nil, err
		}
		return &wsNetConn{Conn: c}, nil
	}))
	return nil
}

// wsNetConn is a gorilla WebSocket as a byte stream: each Write one
// binary message, reads concatenate messages.
type wsNetConn struct {
	*websocket.Conn
	r io.Reader
}

func (c *wsNetConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					err = io.EOF
				}
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsNetConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsNetConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

// tunnelServer is a started tunnel.Server that takes any agent, as kas's
// tunnel listener does, and passes each session on until ctx ends.
func tunnelServer(ctx context.Context) (*tunnel.Server, <-chan *tunnel.Session) {
	sessions := make(chan *tunnel.Session, 1)
	srv := &tunnel.Server{
		Authenticate: func(context.Context, tunnel.Hello) (string, error) { return agentName, nil },
		OnSession: func(ctx context.Context, s *tunnel.Session) {
			sessions <- s
			select {
			case <-ctx.Done():
			case <-s.CloseChan():
			}
		},
		Logger: discardLogger(),
	}
	srv.Start(ctx)
	return srv, sessions
}

// startYamux runs our tunnel package alone: a tunnel.Server takes the
// connection as kas does, a tunnel.Dialer dials it as agentk does, and
// the server side opens streams to the dialer side, which answers each
// with the byte protocol.
func (p *path) startYamux(withLink, ws bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	srv, sessions := tunnelServer(ctx)
	ln, err := listenLocal()
	if err != nil {
		cancel()
		return err
	}
	served := make(chan struct{})
	scheme := "grpc://"
	if ws {
		scheme = "ws://"
		hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
		go func() { defer close(served); _ = hs.Serve(ln) }()
		p.onStop(func() error { cancel(); hs.Close(); <-served; srv.Wait(); return nil })
	} else {
		go func() { defer close(served); _ = srv.ServeListener(ctx, ln) }()
		p.onStop(func() error { cancel(); ln.Close(); <-served; srv.Wait(); return nil })
	}
	addr, err := p.via(ln.Addr().String(), withLink)
	if err != nil {
		return err
	}
	d := &tunnel.Dialer{
		Address: scheme + addr + "/",
		Hello:   tunnel.Hello{Token: agentToken, AgentVersion: "bench", Protocol: tunnel.MaxProtocol},
		Logger:  discardLogger(),
	}
	if !ws {
		d.Address = scheme + addr
	}
	agentSess, err := d.Dial(ctx)
	if err != nil {
		return err
	}
	var streams sync.WaitGroup
	streams.Go(func() {
		for {
			st, err := agentSess.Accept()
			if err != nil {
				return
			}
			streams.Go(func() { serveBytes(st) })
		}
	})
	p.onStop(func() error { agentSess.Close(); streams.Wait(); return nil })
	var kasSess *tunnel.Session
	select {
	case kasSess = <-sessions:
	case <-time.After(10 * time.Second):
		return errors.New("no tunnel session within 10s")
	}
	p.usePool(newConnPool(func(context.Context) (net.Conn, error) { return kasSess.OpenStream() }))
	return nil
}

// newFrontProxy is the reverse proxy of the "proxy" and "remotedialer"
// paths, set up as kas's own: streaming (FlushInterval -1), a pool of
// 100 idle connections, the caller's Accept-Encoding passed through.
func newFrontProxy(target string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: target})
		},
		Transport: &http.Transport{
			DialContext:         dial,
			MaxIdleConns:        100,
			MaxIdleConnsPerHost: 100,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		FlushInterval: -1,
		ErrorLog:      nil,
	}
}

func (p *path) startProxy(be *backend, withLink bool) error {
	target, err := p.via(be.addr, withLink)
	if err != nil {
		return err
	}
	rp := newFrontProxy(target, (&net.Dialer{}).DialContext)
	p.onStop(func() error { rp.Transport.(*http.Transport).CloseIdleConnections(); return nil })
	addr, err := p.serveHTTP(rp)
	if err != nil {
		return err
	}
	p.useHTTP("http://"+addr, nil)
	return nil
}

// startKas runs the full path in this process with our real code: kas
// (kas.Server: its tunnel server, session registry and Kubernetes API
// proxy) and agentk (agentk.Agent: its tunnel dialer and forwarder),
// with production defaults except that kas allows more streams per agent,
// and per user, than BenchmarkStreams opens: the suite's one user stands
// for many callers, and the per-user limit (100 by default) would
// otherwise answer 429 to BenchmarkStreams' 1,000 streams and to the
// ladder's queue at 3,000 req/s, measuring the limit instead of the path
// (remotedialer has no such limit). agentk's "API server" is the backend.
func (p *path) startKas(be *backend, withLink, ws bool) error {
	dir, err := os.MkdirTemp("", "bench-kas-")
	if err != nil {
		return err
	}
	p.onStop(func() error { return os.RemoveAll(dir) })
	cfg := kasConfig(dir, ws)
	cfg.Agent.KubernetesAPI.MaxStreamsPerAgent = maxStreams
	cfg.Limits.MaxStreamsPerUser = maxStreams
	k, err := startKas(cfg)
	if err != nil {
		return err
	}
	p.onStop(k.stop)
	agentAddr, err := p.via(k.Addr("agent").String(), withLink)
	if err != nil {
		return err
	}
	kasURL := "ws://" + agentAddr + "/"
	if !ws {
		kasURL = "grpc://" + agentAddr
	}
	a, err := startAgentk(kasURL, &rest.Config{Host: "http://" + be.addr})
	if err != nil {
		return err
	}
	p.onStop(func() error { a.stop(); return nil })
	p.useHTTP(k.proxyURL(), http.Header{"Authorization": {"Bearer " + userToken}})
	// Ready once a request makes it through: agentk is connected and has
	// its configuration.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := p.fetch(context.Background(), smallSize)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no request through kas within 30s: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
