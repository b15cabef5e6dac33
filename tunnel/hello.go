package tunnel

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// Hello is what agentk says about itself when it connects.
type Hello struct {
	Token        string `json:"token"`
	AgentVersion string `json:"agent_version"`
	Protocol     int    `json:"protocol"`
	// Where agentk runs, for GitLab's agent tracker.
	PodNamespace      string `json:"pod_namespace,omitempty"`
	PodName           string `json:"pod_name,omitempty"`
	KubernetesVersion string `json:"kubernetes_version,omitempty"`
	GitCommit         string `json:"git_commit,omitempty"`
}

// LogValue keeps the token out of every log line that prints a Hello.
func (h Hello) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("agent_version", h.AgentVersion),
		slog.Int("protocol", h.Protocol),
	)
}

// String keeps the token out of %v and %s.
func (h Hello) String() string {
	return fmt.Sprintf("agentk %s (protocol %d)", h.AgentVersion, h.Protocol)
}

// Validate checks that the hello is complete, before any authentication.
func (h Hello) Validate() error {
	if h.Token == "" {
		return fmt.Errorf("%w: no agent token (Authorization: Bearer <token>)", ErrMalformedHandshake)
	}
	if h.Protocol <= 0 {
		return fmt.Errorf("%w: no tunnel protocol version (%s header): is the client an agentk?", ErrMalformedHandshake, HeaderProtocol)
	}
	return nil
}

// CheckProtocol refuses an agent this kas cannot serve with a message that
// says which versions work.
func CheckProtocol(h Hello, kasVersion string) *RefusedError {
	if h.Protocol >= MinProtocol && h.Protocol <= MaxProtocol {
		return nil
	}
	return &RefusedError{
		Status: http.StatusUpgradeRequired,
		Reason: fmt.Sprintf("agentk %s speaks tunnel protocol %d; kas %s serves protocols %d to %d: run an agentk of the same release as kas",
			orUnknown(h.AgentVersion), h.Protocol, kasVersion, MinProtocol, MaxProtocol),
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown version)"
	}
	return s
}

// HelloFromHeader reads a hello from a WebSocket upgrade request.
func HelloFromHeader(hdr http.Header) (Hello, error) {
	h := Hello{AgentVersion: hdr.Get(HeaderAgentVersion)}
	if auth := hdr.Get("Authorization"); auth != "" {
		scheme, token, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return h, fmt.Errorf("%w: Authorization header is not \"Bearer <token>\"", ErrMalformedHandshake)
		}
		h.Token = strings.TrimSpace(token)
	}
	if p := hdr.Get(HeaderProtocol); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return h, fmt.Errorf("%w: %s header %q is not a number", ErrMalformedHandshake, HeaderProtocol, p)
		}
		h.Protocol = n
	}
	return h, h.Validate()
}

// SetHeader writes the hello onto a WebSocket upgrade request.
func (h Hello) SetHeader(hdr http.Header) {
	if h.Token != "" {
		hdr.Set("Authorization", "Bearer "+h.Token)
	}
	hdr.Set(HeaderProtocol, strconv.Itoa(h.Protocol))
	hdr.Set(HeaderAgentVersion, h.AgentVersion)
}

// RefusedError is kas declining a connection. On the wire it is an HTTP
// status with a one-line reason, for WebSocket and raw TCP alike.
type RefusedError struct {
	Status int
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("kas refused the connection: %d %s: %s", e.Status, http.StatusText(e.Status), e.Reason)
}
