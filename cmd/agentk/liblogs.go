package main

import (
	"log"
	"log/slog"

	restfullog "github.com/emicklei/go-restful/v3/log"
	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
)

// routeClientLibraries sends the logs of two libraries client-go links,
// OpenTelemetry and go-restful, into agentk's log: each writes to stderr
// with its own text format otherwise, a stray line in a JSON log.
// logging.RouteLibraries must have run first (go-restful goes through the
// standard logger it routes).
func routeClientLibraries(logger *slog.Logger) {
	l := logger.With("component", "otel")
	otel.SetLogger(logr.FromSlogHandler(l.Handler()))
	// Its errors otherwise go to the standard logger as info lines.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { l.Warn("OpenTelemetry error", "err", err) }))
	restfullog.SetLogger(log.Default())
}
