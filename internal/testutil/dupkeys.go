package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// dupKeys is a slog handler that notes records carrying a key twice (from
// With and the call, or twice in one call): a JSON consumer keeps one of
// them, so one value is lost. The test fails at its end if any did.
type dupKeys struct {
	slog.Handler
	prefix string          // the open groups, "a.b."
	keys   map[string]bool // keys added by With, with their group prefix
	found  *dupFound
}

type dupFound struct {
	mu    sync.Mutex
	lines []string
}

func (f *dupFound) add(msg, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lines) < 10 {
		f.lines = append(f.lines, fmt.Sprintf("%q has key %q twice", msg, key))
	}
}

func (f *dupFound) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.lines, "; ")
}

func (h *dupKeys) Handle(ctx context.Context, r slog.Record) error {
	seen := make(map[string]bool, len(h.keys)+r.NumAttrs())
	for k := range h.keys {
		seen[k] = true
	}
	r.Attrs(func(a slog.Attr) bool {
		k := h.prefix + a.Key
		if seen[k] {
			h.found.add(r.Message, k)
		}
		seen[k] = true
		return true
	})
	return h.Handler.Handle(ctx, r)
}

func (h *dupKeys) WithAttrs(attrs []slog.Attr) slog.Handler {
	keys := make(map[string]bool, len(h.keys)+len(attrs))
	for k := range h.keys {
		keys[k] = true
	}
	for _, a := range attrs {
		k := h.prefix + a.Key
		if keys[k] {
			h.found.add("With", k)
		}
		keys[k] = true
	}
	return &dupKeys{Handler: h.Handler.WithAttrs(attrs), prefix: h.prefix, keys: keys, found: h.found}
}

func (h *dupKeys) WithGroup(name string) slog.Handler {
	return &dupKeys{Handler: h.Handler.WithGroup(name), prefix: h.prefix + name + ".", keys: h.keys, found: h.found}
}
