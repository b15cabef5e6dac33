package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"kubetunnel/tunnel/mux"
)

// Dialer connects agentk to kas. The zero value is not usable: Address and
// Hello are required.
type Dialer struct {
	// Address is the kas address: wss://host[:port]/path, ws://…,
	// grpcs://host:port or grpc://host:port.
	Address string
	Hello   Hello
	// TLS is used for wss:// and grpcs://; nil means system roots.
	TLS *tls.Config
	// Header holds extra headers for the WebSocket upgrade (--kas-header).
	Header http.Header
	// Proxy picks an HTTP proxy for the outbound connection; nil means
	// http.ProxyFromEnvironment (HTTPS_PROXY, NO_PROXY).
	Proxy            func(*http.Request) (*url.URL, error)
	HandshakeTimeout time.Duration
	Session          SessionConfig
	Logger           *slog.Logger
	// NetDial dials TCP; nil means a net.Dialer. Tests inject faults here.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ParseAddress checks a kas address and says what to fix when it is wrong.
func ParseAddress(address string) (*url.URL, error) {
	u, err := url.Parse(address)
	if err != nil {
		return nil, fmt.Errorf("kas address %q: %w", address, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "grpc", "grpcs":
		if u.Port() == "" {
			return nil, fmt.Errorf("kas address %q: %s:// needs a port, e.g. %s://%s:8150", address, u.Scheme, u.Scheme, u.Hostname())
		}
	default:
		return nil, fmt.Errorf("%w: kas address %q has scheme %q: use wss://, ws://, grpcs:// or grpc://", ErrUnsupportedScheme, address, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("kas address %q has no host", address)
	}
	return u, nil
}

// Dial connects, performs the handshake and returns the yamux session, on
// which agentk is the client.
func (d *Dialer) Dial(ctx context.Context) (*mux.Session, error) {
	u, err := ParseAddress(d.Address)
	if err != nil {
		return nil, err
	}
	timeout := d.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var conn sessionConn // mux writes each frame whole on it
	switch u.Scheme {
	case "ws", "wss":
		conn, err = d.dialWebSocket(hctx, u)
	default:
		conn, err = d.dialRaw(hctx, u)
	}
	if err != nil {
		return nil, err
	}
	sess, err := mux.Client(conn, d.Session.mux(d.Logger))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return sess, nil
}

func (d *Dialer) proxyFunc() func(*http.Request) (*url.URL, error) {
	if d.Proxy != nil {
		return d.Proxy
	}
	return http.ProxyFromEnvironment
}

func (d *Dialer) netDial(ctx context.Context, addr string) (net.Conn, error) {
	if d.NetDial != nil {
		return d.NetDial(ctx, "tcp", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", addr)
}

func (d *Dialer) dialWebSocket(ctx context.Context, u *url.URL) (sessionConn, error) {
	hdr := http.Header{}
	for k, vs := range d.Header {
		for _, v := range vs {
			hdr.Add(k, v)
		}
	}
	d.Hello.SetHeader(hdr)
	wd := &websocket.Dialer{
		// The proxy, if any, is reached with CONNECT for ws:// too: a
		// plain forward proxy would not pass the upgrade through. For
		// wss:// the dialer runs TLS over what this returns.
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.dialThroughProxy(ctx, u)
		},
		TLSClientConfig: d.TLS,
		ReadBufferSize:  wsClientReadBufferSize,
		WriteBufferSize: wsWriteBufferSize,
		WriteBufferPool: wsWriteBuffers,
		// The dialer never follows a redirect (which would re-send the
		// token elsewhere): explainUpgradeFailure says what to fix.
	}
	c, resp, err := wd.DialContext(ctx, u.String(), hdr)
	if err != nil {
		return nil, d.explainUpgradeFailure(u, resp, err)
	}
	// The session owns the connection from here: it has no deadline.
	return newWSConn(c), nil
}

func (d *Dialer) explainUpgradeFailure(u *url.URL, resp *http.Response, err error) error {
	if resp == nil {
		return fmt.Errorf("connecting to kas at %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxReasonSize))
	reason := strings.TrimSpace(string(body))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusUpgradeRequired ||
		resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge ||
		resp.StatusCode == http.StatusTooManyRequests:
		if reason == "" {
			reason = http.StatusText(resp.StatusCode)
		}
		return &RefusedError{Status: resp.StatusCode, Reason: reason}
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		loc := resp.Header.Get("Location")
		hint := ""
		if strings.TrimSuffix(loc, "/") == strings.TrimSuffix(u.String(), "/") || strings.HasSuffix(loc, u.Path+"/") {
			hint = ": the path needs a trailing slash"
		}
		return fmt.Errorf("kas address %q answered %d redirecting to %q%s; set --kas-address to the final URL", u.Redacted(), resp.StatusCode, loc, hint)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("kas address %q answered 404 Not Found to the WebSocket upgrade: is the path right, and is it a kas agent listener?", u.Redacted())
	default:
		return fmt.Errorf("kas address %q answered %d %s to the WebSocket upgrade: %s (%w)", u.Redacted(), resp.StatusCode, http.StatusText(resp.StatusCode), reason, err)
	}
}

func (d *Dialer) dialRaw(ctx context.Context, u *url.URL) (sessionConn, error) {
	conn, err := d.dialThroughProxy(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("connecting to kas at %s: %w", u.Redacted(), err)
	}
	if u.Scheme == "grpcs" {
		cfg := d.TLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tconn := tls.Client(conn, cfg)
		if err := tconn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake with kas at %s: %w", u.Redacted(), err)
		}
		conn = tconn
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	err = WriteHello(conn, d.Hello)
	if err == nil {
		err = ReadReply(conn)
	}
	if err != nil {
		conn.Close()
		var refused *RefusedError
		if errors.As(err, &refused) {
			return nil, refused
		}
		return nil, fmt.Errorf("handshake with kas at %s: %w", u.Redacted(), err)
	}
	// Deadlines belong to the handshake only: yamux runs its own keepalive,
	// and a deadline on the shared connection would close every stream.
	_ = conn.SetDeadline(time.Time{})
	return newFrameConn(conn), nil
}

// dialThroughProxy honours HTTPS_PROXY/HTTP_PROXY/NO_PROXY with an HTTP
// CONNECT tunnel, for every scheme.
func (d *Dialer) dialThroughProxy(ctx context.Context, u *url.URL) (net.Conn, error) {
	target := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "wss" {
			port = "443"
		}
		target = net.JoinHostPort(u.Hostname(), port)
	}
	// The proxy environment is keyed by scheme: wss and grpcs are
	// https-like, ws and grpc http-like.
	probe := &http.Request{URL: &url.URL{Scheme: "https", Host: target}}
	if u.Scheme == "grpc" || u.Scheme == "ws" {
		probe.URL.Scheme = "http"
	}
	proxyURL, err := d.proxyFunc()(probe)
	if err != nil {
		return nil, fmt.Errorf("choosing a proxy: %w", err)
	}
	if proxyURL == nil {
		return d.netDial(ctx, target)
	}
	phost := proxyURL.Host
	if proxyURL.Port() == "" {
		phost = net.JoinHostPort(proxyURL.Hostname(), "80")
	}
	conn, err := d.netDial(ctx, phost)
	if err != nil {
		return nil, fmt.Errorf("dialing proxy %s: %w", proxyURL.Redacted(), err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: target}, Host: target, Header: http.Header{}}
	if proxyURL.User != nil {
		req.SetBasicAuth(proxyURL.User.Username(), func() string { p, _ := proxyURL.User.Password(); return p }())
		req.Header.Set("Proxy-Authorization", req.Header.Get("Authorization"))
		req.Header.Del("Authorization")
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("CONNECT via proxy %s: %w", proxyURL.Redacted(), err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("CONNECT via proxy %s: %w", proxyURL.Redacted(), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("proxy %s refused CONNECT %s: %s", proxyURL.Redacted(), target, resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		conn.Close()
		return nil, fmt.Errorf("proxy %s sent data before the tunnel was up", proxyURL.Redacted())
	}
	return conn, nil
}
