package main

import (
	"errors"
	"log"
	"os"
	"testing"

	restfullog "github.com/emicklei/go-restful/v3/log"
	"go.opentelemetry.io/otel"

	"kubetunnel/internal/logging"
	tu "kubetunnel/internal/testutil"
)

// OpenTelemetry's and go-restful's lines land in agentk's log, not as
// their own text on stderr.
func TestClientLibrariesLogThroughSlog(t *testing.T) {
	logger, sink := tu.NewLogger(t)
	logging.RouteLibraries(logger)
	routeClientLibraries(logger)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	otel.Handle(errors.New("exporter unreachable"))
	restfullog.Printf("route %s registered twice", "/x")
	for _, want := range []string{"level=WARN msg=\"OpenTelemetry error\" component=otel err=\"exporter unreachable\"", "route /x registered twice", "component=stdlib"} {
		if !sink.Contains(want) {
			t.Errorf("log lacks %q:\n%s", want, sink.String())
		}
	}
}
