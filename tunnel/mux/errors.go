package mux

import (
	"errors"
	"os"
)

// Errors callers branch on.
var (
	// ErrSessionShutdown: the session is closed.
	ErrSessionShutdown = errors.New("mux: session shutdown")
	// ErrRemoteGoAway: the peer said it takes no more streams.
	ErrRemoteGoAway = errors.New("mux: remote end is not accepting connections")
	// ErrConnectionReset: the stream was reset (by the peer, or by its
	// close timeout here).
	ErrConnectionReset = errors.New("mux: stream reset")
	// ErrStreamClosed: a write after Close.
	ErrStreamClosed = errors.New("mux: stream closed")
	// ErrStreamsExhausted: every stream ID of this side is used.
	ErrStreamsExhausted = errors.New("mux: streams exhausted")
	// ErrKeepAliveTimeout: the peer did not answer a ping in time.
	ErrKeepAliveTimeout = errors.New("mux: keepalive timeout")
	// ErrStreamOpenTimeout: the peer did not accept a stream in time.
	ErrStreamOpenTimeout = errors.New("mux: stream open timeout")
	// ErrTimeout: a stream's read or write deadline passed.
	ErrTimeout error = timeoutError{}
)

// errProtocol ends a session whose peer broke the framing rules.
type errProtocol struct{ msg string }

func (e *errProtocol) Error() string { return "mux: protocol error: " + e.msg }

// timeoutError is a net.Error and os.ErrDeadlineExceeded, so callers
// that check either (net/http, our stream code) see a deadline for what
// it is.
type timeoutError struct{}

func (timeoutError) Error() string   { return "mux: i/o deadline reached" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// Is makes errors.Is(err, os.ErrDeadlineExceeded) true, as for a net.Conn.
func (timeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }
