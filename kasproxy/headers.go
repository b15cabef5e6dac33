package kasproxy

import (
	"net/http"
	"strings"

	"kubetunnel/internal/kubehttp"
)

// Verb maps a request to a small fixed set, for metric labels and logs.
func Verb(r *http.Request) string {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || strings.HasPrefix(strings.ToUpper(r.Header.Get("Upgrade")), "SPDY") {
		return "connect"
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if kubehttp.IsWatch(r) {
			return "watch"
		}
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	default:
		return "other"
	}
}

// Verbs is every value Verb returns.
var Verbs = []string{"get", "watch", "create", "update", "patch", "delete", "connect", "other"}
