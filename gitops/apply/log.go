package apply

import (
	"context"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
)

// engineLogger adapts logger for gitops-engine, which logs every apply,
// every task and every state change at info level: below error its
// messages become debug messages.
func engineLogger(logger *slog.Logger) logr.Logger {
	return logr.FromSlogHandler(quietHandler{logger.Handler().WithAttrs([]slog.Attr{slog.String("component", "gitops-engine")})})
}

type quietHandler struct {
	h slog.Handler
}

func lower(l slog.Level) slog.Level {
	if l >= slog.LevelError {
		return l
	}
	return slog.LevelDebug
}

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, lower(l))
}

// benign are gitops-engine errors that are expected and handled: an
// aggregated API that is down (discovery still returns everything else)
// and a CRD slower than gitops-engine's 3 s to be established (the apply
// of its custom objects waits for it).
var benign = []string{
	"Partial success when performing preferred resource discovery",
	"failed to ensure that CRD ",
	"Failed to start missing watches after APIService event", // errInvalidated
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = lower(r.Level)
	for _, b := range benign {
		if strings.HasPrefix(r.Message, b) {
			r.Level = slog.LevelDebug
			if !q.h.Enabled(ctx, r.Level) {
				return nil
			}
		}
	}
	return q.h.Handle(ctx, r)
}

func (q quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{q.h.WithAttrs(attrs)}
}

func (q quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{q.h.WithGroup(name)}
}
