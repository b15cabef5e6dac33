package tunnel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// The raw-TCP handshake (grpc:// and grpcs://) has no HTTP request to carry
// headers, so agentk sends one hello frame first and kas answers with one
// reply frame before yamux starts:
//
//	hello: "KTUN/1\r\n" | uint32 big-endian length | JSON Hello
//	reply: "KTUN/1\r\n" | uint16 big-endian status | uint16 big-endian length | reason
//
// The magic ends in CRLF so that an HTTP server that receives a hello by
// mistake (grpc:// pointed at a WebSocket listener) rejects it at once as a
// malformed request line instead of waiting for more.
var frameMagic = [8]byte{'K', 'T', 'U', 'N', '/', '1', '\r', '\n'}

const maxReasonSize = 1 << 10

// errHTTPReply is a raw hello answered by an HTTP server.
var errHTTPReply = fmt.Errorf("%w: kas answered with HTTP: this listener takes WebSocket connections, use ws:// or wss:// (or set websocket: false on the kas agent listener)", ErrMalformedHandshake)

// WriteHello sends h as a hello frame.
func WriteHello(w io.Writer, h Hello) error {
	body, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if len(body) > MaxHelloSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrHelloTooLarge, len(body), MaxHelloSize)
	}
	buf := make([]byte, 12, 12+len(body))
	copy(buf, frameMagic[:])
	binary.BigEndian.PutUint32(buf[8:], uint32(len(body)))
	_, err = w.Write(append(buf, body...))
	return err
}

// ReadHello reads one hello frame. It never reads more than MaxHelloSize
// bytes of body, whatever the length prefix claims.
func ReadHello(r io.Reader) (Hello, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Hello{}, fmt.Errorf("%w: reading hello header: %w", ErrMalformedHandshake, err)
	}
	if [8]byte(hdr[:8]) != frameMagic {
		return Hello{}, fmt.Errorf("%w: the connection does not start with a tunnel hello (is it a TLS or HTTP client on a raw TCP listener?)", ErrMalformedHandshake)
	}
	n := binary.BigEndian.Uint32(hdr[8:])
	if n > MaxHelloSize {
		return Hello{}, fmt.Errorf("%w: %d bytes, at most %d", ErrHelloTooLarge, n, MaxHelloSize)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Hello{}, fmt.Errorf("%w: reading hello body: %w", ErrMalformedHandshake, err)
	}
	var h Hello
	if err := json.Unmarshal(body, &h); err != nil {
		return Hello{}, fmt.Errorf("%w: hello is not JSON: %w", ErrMalformedHandshake, err)
	}
	return h, h.Validate()
}

// WriteReply answers a hello; status 200 means the session starts.
func WriteReply(w io.Writer, status int, reason string) error {
	reason = strings.ReplaceAll(reason, "\n", " ")
	if len(reason) > maxReasonSize {
		reason = reason[:maxReasonSize]
	}
	buf := make([]byte, 12, 12+len(reason))
	copy(buf, frameMagic[:])
	binary.BigEndian.PutUint16(buf[8:], uint16(status))
	binary.BigEndian.PutUint16(buf[10:], uint16(len(reason)))
	_, err := w.Write(append(buf, reason...))
	return err
}

// ReadReply reads kas's answer; a status other than 200 is a *RefusedError.
func ReadReply(r io.Reader) error {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if bytes.HasPrefix(hdr[:], []byte("HTTP/")) {
			return errHTTPReply
		}
		return fmt.Errorf("reading the handshake reply: %w (is the address a kas agent listener with websocket: false?)", err)
	}
	if bytes.HasPrefix(hdr[:], []byte("HTTP/")) {
		return errHTTPReply
	}
	if [8]byte(hdr[:8]) != frameMagic {
		return fmt.Errorf("%w: the reply is not a tunnel reply (is the address a kas agent listener with websocket: false? for a WebSocket listener use ws:// or wss://)", ErrMalformedHandshake)
	}
	status := int(binary.BigEndian.Uint16(hdr[8:]))
	n := binary.BigEndian.Uint16(hdr[10:])
	if n > maxReasonSize {
		return fmt.Errorf("%w: reply reason of %d bytes", ErrMalformedHandshake, n)
	}
	reason := make([]byte, n)
	if _, err := io.ReadFull(r, reason); err != nil {
		return fmt.Errorf("%w: reading reply reason: %w", ErrMalformedHandshake, err)
	}
	if status != 200 {
		return &RefusedError{Status: status, Reason: string(reason)}
	}
	return nil
}
