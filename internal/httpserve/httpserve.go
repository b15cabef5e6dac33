// Package httpserve runs an http.Server for the lifetime of a context, the
// way every listener of kas and agentk is run.
package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Defaults for Serve.
const (
	// DefaultGrace bounds the graceful part of a stop.
	DefaultGrace = 5 * time.Second
	// DefaultReadHeaderTimeout bounds reading a request's headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes a keep-alive connection with no request:
	// without it, idle connections were never closed, and enough of them
	// used up the process's open files.
	DefaultIdleTimeout = 2 * time.Minute
)

// Serve serves h on ln until ctx is done, then shuts down gracefully. It
// bounds headers and idle keep-alive connections with the defaults; use
// ServeServer for other bounds.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	return ServeServer(ctx, ln, &http.Server{Handler: h, ReadHeaderTimeout: DefaultReadHeaderTimeout, IdleTimeout: DefaultIdleTimeout}, DefaultGrace)
}

// ServeServer serves srv on ln until ctx is done. Then it stops accepting,
// lets requests in flight finish for up to grace, and closes what is left.
func ServeServer(ctx context.Context, ln net.Listener, srv *http.Server, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
