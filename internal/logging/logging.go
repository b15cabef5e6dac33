// Package logging builds the slog logger of kas and agentk from their
// --log-format and --log-level flags, routes the logging of the libraries
// they use (klog, gRPC, the standard library's log package, which
// net/http's servers write "http: TLS handshake error" to) through it, and
// summarises failures that repeat.
package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"google.golang.org/grpc/grpclog"
	"k8s.io/klog/v2"
)

// Formats accepted by --log-format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing to w in format (text or json) at level,
// with repeats summarised (Summarize, default window) and a flood of
// lines written a window at a time (BatchWriter, DefaultFlushDelay and
// DefaultBurst); flush logs the summaries still open and writes
// what is held, for a main to call before it exits.
func New(w io.Writer, format string, level slog.Leveler) (logger *slog.Logger, flush func(), err error) {
	opts := &slog.HandlerOptions{Level: level}
	bw := NewBatchWriter(w, DefaultFlushDelay, DefaultBurst)
	var h slog.Handler
	switch format {
	case FormatText, "":
		h = slog.NewTextHandler(bw, opts)
	case FormatJSON:
		h = slog.NewJSONHandler(bw, opts)
	default:
		return nil, nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	s := Summarize(flushOnWarn{h, bw}, SummarizeOptions{})
	return slog.New(s), func() { s.Flush(); bw.Flush() }, nil
}

// RouteLibraries sends what libraries log on their own through logger:
// klog (client-go), gRPC's logger and the standard library's log package.
// Those loggers are process-wide, so only a main calls this.
func RouteLibraries(logger *slog.Logger) {
	klog.SetSlogLogger(logger.With("component", "klog"))
	grpclog.SetLoggerV2(grpcLogger{l: logger.With("component", "grpc")})
	log.SetFlags(0)
	log.SetPrefix("")
	log.SetOutput(&stdlibWriter{l: logger})
}

// stdlibWriter turns each line the log package writes into a slog record.
// net/http's servers log through it when they have no ErrorLog: a client
// that fails the TLS handshake is the client's problem, so it is a
// warning, with the peer and the reason as keys.
type stdlibWriter struct{ l *slog.Logger }

func (w *stdlibWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg := string(line)
		if rest, ok := strings.CutPrefix(msg, "http: TLS handshake error from "); ok {
			if remote, reason, ok := strings.Cut(rest, ": "); ok {
				w.l.Warn("TLS handshake failed", "component", "stdlib", "remote", remote, "err", reason)
				continue
			}
		}
		if rest, ok := strings.CutPrefix(msg, "http: "); ok {
			w.l.Warn("HTTP server: "+rest, "component", "net/http")
			continue
		}
		w.l.Info(msg, "component", "stdlib")
	}
	return len(p), nil
}

// grpcLogger is gRPC's LoggerV2 on slog. gRPC's info and warning lines
// are transport detail that kas and agentk report in their own words, so
// they are debug; errors stay errors.
type grpcLogger struct{ l *slog.Logger }

func (g grpcLogger) log(level slog.Level, msg string) {
	g.l.Log(context.Background(), level, strings.TrimRight(msg, "\n"))
}

func (g grpcLogger) Info(args ...any)   { g.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLogger) Infoln(args ...any) { g.log(slog.LevelDebug, fmt.Sprintln(args...)) }
func (g grpcLogger) Infof(format string, args ...any) {
	g.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Warning(args ...any)   { g.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any) { g.log(slog.LevelDebug, fmt.Sprintln(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) {
	g.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any) { g.log(slog.LevelError, fmt.Sprintln(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Fatal(args ...any) {
	g.log(slog.LevelError, fmt.Sprint(args...))
	panic("grpc: fatal")
}
func (g grpcLogger) Fatalln(args ...any) {
	g.log(slog.LevelError, fmt.Sprintln(args...))
	panic("grpc: fatal")
}
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
	panic("grpc: fatal")
}
func (g grpcLogger) V(l int) bool { return g.l.Enabled(context.Background(), slog.LevelDebug) }

// Repeats counts a failure that repeats on every retry (a refused agent,
// say) so the line after it can say how many tries failed. It logs each
// one as it comes: the binaries' handler (Summarize) collapses the
// repeats into one line and a summary a window.
type Repeats struct {
	mu    sync.Mutex // guards key and count
	key   string
	count int
}

// Log logs msg with args at level and counts it. key identifies the
// failure: another key starts the count over.
func (r *Repeats) Log(l *slog.Logger, level slog.Level, key, msg string, args ...any) {
	r.mu.Lock()
	if key != r.key {
		r.key, r.count = key, 0
	}
	r.count++
	r.mu.Unlock()
	l.Log(context.Background(), level, msg, args...)
}

// Reset ends the current run of failures and returns how many there were.
func (r *Repeats) Reset() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.count
	r.key, r.count = "", 0
	return n
}
