package tunnel

import (
	"log/slog"
	"time"

	"kubetunnel/tunnel/mux"
)

// SessionConfig tunes the stream multiplexer's session (package mux); the zero value uses the defaults.
// Both ends should agree on keepalive so each detects a dead peer.
type SessionConfig struct {
	// KeepAliveInterval is how often a ping is sent on a silent link; keep it
	// below the idle timeout of load balancers on the path.
	KeepAliveInterval time.Duration
	// KeepAliveTimeout is how long a ping (and any write) may wait before
	// the session is declared dead. A dead peer is detected within
	// KeepAliveInterval+KeepAliveTimeout.
	KeepAliveTimeout time.Duration
	// MaxStreamWindow is the per-stream receive window. One stream moves
	// at most window/RTT, so yamux's 256 KiB default (and 4 MiB) starved
	// a single list or log over a WAN link; it is also the most a stream
	// whose reader stalls can hold in memory (memory is only used as data
	// waits unread). See docs/benchmarks.md, "Stream window".
	MaxStreamWindow uint32
	// StreamCloseTimeout is how long a stream closed on this side waits
	// for the peer's close before it is reset and its buffers freed. A
	// peer blocked writing into a stream nobody reads never closes it, so
	// this is how long such a stream's window stays in memory.
	StreamCloseTimeout time.Duration
}

func (c SessionConfig) withDefaults() SessionConfig {
	if c.KeepAliveInterval <= 0 {
		c.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if c.KeepAliveTimeout <= 0 {
		c.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if c.MaxStreamWindow == 0 {
		c.MaxStreamWindow = DefaultMaxStreamWindow
	}
	if c.StreamCloseTimeout <= 0 {
		c.StreamCloseTimeout = DefaultStreamCloseTimeout
	}
	return c
}

func (c SessionConfig) mux(logger *slog.Logger) *mux.Config {
	c = c.withDefaults()
	return &mux.Config{
		AcceptBacklog:      DefaultAcceptBacklog,
		KeepAliveInterval:  c.KeepAliveInterval,
		WriteTimeout:       c.KeepAliveTimeout,
		MaxStreamWindow:    c.MaxStreamWindow,
		StreamCloseTimeout: c.StreamCloseTimeout,
		Logger:             logger,
	}
}
