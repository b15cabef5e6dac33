package tunnel

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	coder "github.com/coder/websocket"
	"github.com/hashicorp/yamux"
)

// Earlier releases carried the tunnel over coder/websocket, sending a
// yamux frame's header and body as two messages. Message boundaries mean
// nothing on this wire (PROTOCOL.md), so old agents and this kas, and
// this agentk and an old kas, interoperate.

// echoOver opens a stream on sess and checks a 300 KB round trip.
// echoOver opens a stream on sess (package mux's or hashicorp/yamux's)
// and checks the peer echoes.
func echoOver(t *testing.T, sess interface{ Open() (net.Conn, error) }) {
	t.Helper()
	st, err := sess.Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer st.Close()
	msg := bytes.Repeat([]byte("0123456789"), 30_000)
	go st.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %v (equal: %v)", err, bytes.Equal(got, msg))
	}
}

// oldYamuxConfig is the hashicorp/yamux session an agentk or kas built
// before package mux runs: the same window and keepalive.
func oldYamuxConfig() *yamux.Config {
	c := SessionConfig{}.withDefaults()
	y := yamux.DefaultConfig()
	y.AcceptBacklog = DefaultAcceptBacklog
	y.KeepAliveInterval = c.KeepAliveInterval
	y.ConnectionWriteTimeout = c.KeepAliveTimeout
	y.MaxStreamWindowSize = c.MaxStreamWindow
	y.StreamCloseTimeout = c.StreamCloseTimeout
	y.LogOutput = io.Discard
	return y
}

func TestOldAgentkNewKas(t *testing.T) {
	ts := startServer(t, "ws")
	hdr := http.Header{}
	Hello{Token: goodToken, AgentVersion: "v-old", Protocol: 1}.SetHeader(hdr)
	c, _, err := coder.Dial(context.Background(), ts.address, &coder.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := yamux.Client(coder.NetConn(context.Background(), c, coder.MessageBinary), oldYamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	echoOver(t, sess)
}

func TestNewAgentkOldKas(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, nil)
		if err != nil {
			return
		}
		sess, err := yamux.Server(coder.NetConn(context.Background(), c, coder.MessageBinary), oldYamuxConfig())
		if err != nil {
			return
		}
		defer sess.Close()
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				io.Copy(st, st)
			}()
		}
	}))
	defer hs.Close()
	d := &Dialer{
		Address: strings.Replace(hs.URL, "http", "ws", 1) + "/",
		Hello:   Hello{Token: goodToken, AgentVersion: "v-new", Protocol: 1, Protocols: OfferProtocols(0)},
		Proxy:   func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	sess, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	echoOver(t, sess)
}
