package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"kubetunnel/tunnel/mux"
)

// WebSocket buffer sizes. A write buffer holds one yamux frame (header and
// body; agentk sends a large body in frames of wire.BodyFrameSize) so it
// goes out as one WebSocket frame in one system call; agentk, the client,
// masks it in place there. Write buffers come from a pool and are held
// only while a message is written, so an idle session holds none: kas
// keeps thousands of sessions.
const (
	wsWriteBufferSize = 128<<10 + mux.HeaderSize
	// agentk has one session: a larger read buffer costs little and saves
	// read system calls on big responses. kas reuses the 4 KiB buffer of
	// the connection it hijacked.
	wsClientReadBufferSize = 32 << 10
	// wsCloseTimeout bounds the close frame Close sends; a peer that stopped
	// reading must not hold Close up.
	wsCloseTimeout = 100 * time.Millisecond
)

// wsWriteBuffers is shared by every WebSocket connection of the process
// (gorilla wants one pool per buffer size).
var wsWriteBuffers = &sync.Pool{}

// wsConn carries the multiplexer's byte stream (package mux, yamux's wire
// format) in WebSocket binary messages: one message per frame, header and
// body together (WriteFrame), so each frame costs one WebSocket frame and
// one system call. Message boundaries carry no meaning
// (tunnel/PROTOCOL.md): a reader concatenates payloads, so a peer that
// frames differently (hashicorp/yamux writes a header and its body
// separately: two messages) interoperates.
//
// The mux writes (and sets write deadlines) only under its session's
// write lock, and only its receive loop reads, which is the one-writer,
// one-reader concurrency gorilla/websocket allows.
type wsConn struct {
	c *websocket.Conn

	r       io.Reader // the message being read, nil between messages
	readErr error     // sticky: gorilla panics on repeated reads after a failure
}

func newWSConn(c *websocket.Conn) *wsConn {
	return &wsConn{c: c}
}

func (w *wsConn) Read(p []byte) (int, error) {
	for {
		if w.readErr != nil {
			return 0, w.readErr
		}
		if w.r == nil {
			typ, r, err := w.c.NextReader()
			if err != nil {
				if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
					err = io.EOF
				}
				w.readErr = err
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				w.readErr = fmt.Errorf("WebSocket message of type %d: the tunnel carries binary messages only", typ)
				return 0, w.readErr
			}
			w.r = r
		}
		n, err := w.r.Read(p)
		if err == io.EOF {
			w.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			w.readErr = err
		}
		return n, err
	}
}

// Write sends p as one message.
func (w *wsConn) Write(p []byte) (int, error) {
	if err := w.WriteFrame(p, nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteFrame sends a frame's header and body as one message.
func (w *wsConn) WriteFrame(hdr, body []byte) error {
	mw, err := w.c.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	if _, err := mw.Write(hdr); err != nil {
		return err
	}
	if len(body) > 0 {
		if _, err := mw.Write(body); err != nil {
			return err
		}
	}
	return mw.Close()
}

// Close says goodbye with a close frame when it can, then closes the
// connection.
func (w *wsConn) Close() error {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = w.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wsCloseTimeout))
	err := w.c.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (w *wsConn) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *wsConn) RemoteAddr() net.Addr { return w.c.RemoteAddr() }

func (w *wsConn) SetDeadline(t time.Time) error {
	return errors.Join(w.c.SetReadDeadline(t), w.c.SetWriteDeadline(t))
}

func (w *wsConn) SetReadDeadline(t time.Time) error  { return w.c.SetReadDeadline(t) }
func (w *wsConn) SetWriteDeadline(t time.Time) error { return w.c.SetWriteDeadline(t) }
