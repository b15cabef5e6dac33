// Package apijson writes the JSON answers of kas's HTTP APIs on the
// observability listener (status, webhooks), so they share one shape: an
// indented body, never cached, and {"error": "..."} for a failure.
package apijson

import (
	"encoding/json"
	"net/http"
)

// Error is the body of a failed request.
type Error struct {
	Error string `json:"error"`
}

// Write answers code with v as indented JSON, not to be cached.
func Write(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
