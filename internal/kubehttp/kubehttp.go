// Package kubehttp holds what both ends of the Kubernetes API proxy need:
// answering in the API server's own error format, and removing headers a
// caller must not be able to pass through.
package kubehttp

import (
	"encoding/json"
	"net/http"
	"strings"
)

// status is the Kubernetes API's error body (metav1.Status), so kubectl
// prints our message instead of a generic one.
type status struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Status     string `json:"status"`
	Message    string `json:"message"`
	Reason     string `json:"reason"`
	Code       int    `json:"code"`
}

var reasons = map[int]string{
	http.StatusBadRequest:          "BadRequest",
	http.StatusUnauthorized:        "Unauthorized",
	http.StatusForbidden:           "Forbidden",
	http.StatusNotFound:            "NotFound",
	http.StatusTooManyRequests:     "TooManyRequests",
	http.StatusBadGateway:          "InternalError",
	http.StatusServiceUnavailable:  "ServiceUnavailable",
	http.StatusGatewayTimeout:      "Timeout",
	http.StatusInternalServerError: "InternalError",
}

// WriteStatus answers with a Kubernetes Status object.
func WriteStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(status{
		Kind: "Status", APIVersion: "v1", Status: "Failure",
		Message: msg, Reason: reasons[code], Code: code,
	})
}

// ImpersonationHeader returns the first Impersonate-* header in h, or "".
func ImpersonationHeader(h http.Header) string {
	for k := range h {
		if ck := http.CanonicalHeaderKey(k); strings.HasPrefix(ck, "Impersonate-") {
			return ck
		}
	}
	return ""
}

// StripCallerHeaders removes what must never pass from a caller to the
// next hop: credentials, any impersonation, and the Kas-* headers that
// only kas may set.
func StripCallerHeaders(h http.Header) {
	for k := range h {
		ck := http.CanonicalHeaderKey(k)
		if ck == "Authorization" || ck == "Proxy-Authorization" || ck == "Cookie" ||
			strings.HasPrefix(ck, "Impersonate-") || strings.HasPrefix(ck, "Kas-") {
			delete(h, k)
		}
	}
}
