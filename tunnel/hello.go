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
	// Protocol is the oldest tunnel protocol the agent speaks (1). kas
	// releases from before protocol 2 read only this field and refuse any
	// value but 1.
	Protocol int `json:"protocol"`
	// Protocols lists every protocol the agent speaks; kas picks the
	// highest it speaks too (Negotiate). Missing, as from an agentk from
	// before protocol 2: Protocol alone.
	Protocols []int `json:"protocols,omitempty"`

	// Metadata for kas's status and GitLab's agent tracker; optional, so
	// that agents which do not send it still connect.
	PodNamespace      string `json:"pod_namespace,omitempty"`
	PodName           string `json:"pod_name,omitempty"`
	KubernetesVersion string `json:"kubernetes_version,omitempty"`
	GitCommit         string `json:"git_commit,omitempty"`
}

// MaxHelloMetadataLen bounds each metadata field of a Hello (a pod name is
// at most 253 bytes).
const MaxHelloMetadataLen = 256

// LogValue keeps the token out of every log line that prints a Hello.
func (h Hello) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("agent_version", h.AgentVersion),
		slog.Int("protocol", h.Protocol),
		slog.String("protocols", joinInts(h.Offered())),
	}
	for _, f := range h.metadata() {
		if *f.value != "" {
			attrs = append(attrs, slog.String(f.json, *f.value))
		}
	}
	return slog.GroupValue(attrs...)
}

// helloField is one metadata field: its JSON name, its WebSocket header,
// and where it lives.
type helloField struct {
	json, header string
	value        *string
}

func (h *Hello) metadata() []helloField {
	return []helloField{
		{"pod_namespace", HeaderPodNamespace, &h.PodNamespace},
		{"pod_name", HeaderPodName, &h.PodName},
		{"kubernetes_version", HeaderKubernetesVersion, &h.KubernetesVersion},
		{"git_commit", HeaderGitCommit, &h.GitCommit},
	}
}

// WebSocket handshake headers of the metadata fields.
const (
	HeaderPodNamespace      = "Kas-Agentk-Pod-Namespace"
	HeaderPodName           = "Kas-Agentk-Pod-Name"
	HeaderKubernetesVersion = "Kas-Agentk-Kubernetes-Version"
	HeaderGitCommit         = "Kas-Agentk-Git-Commit"
)

// String keeps the token out of %v and %s.
func (h Hello) String() string {
	return fmt.Sprintf("agentk %s (protocols %s)", h.AgentVersion, joinInts(h.Offered()))
}

// Validate checks that the hello is complete, before any authentication.
func (h Hello) Validate() error {
	if h.Token == "" {
		return fmt.Errorf("%w: no agent token (Authorization: Bearer <token>)", ErrMalformedHandshake)
	}
	if h.Protocol <= 0 {
		return fmt.Errorf("%w: no tunnel protocol version (%s header): is the client an agentk?", ErrMalformedHandshake, HeaderProtocol)
	}
	if len(h.Protocols) > maxOffered {
		return fmt.Errorf("%w: %d protocols offered, at most %d", ErrMalformedHandshake, len(h.Protocols), maxOffered)
	}
	for _, f := range h.metadata() {
		if len(*f.value) > MaxHelloMetadataLen {
			return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrMalformedHandshake, f.json, len(*f.value), MaxHelloMetadataLen)
		}
	}
	return nil
}

// maxOffered bounds the protocols one hello may list.
const maxOffered = 16

// Offered is the protocols the agent speaks.
func (h Hello) Offered() []int {
	if len(h.Protocols) == 0 {
		return []int{h.Protocol}
	}
	return h.Protocols
}

// Negotiate returns the highest protocol both the agent and this kas
// speak, or 0 if none.
func (h Hello) Negotiate() int {
	best := 0
	for _, p := range h.Offered() {
		if p >= MinProtocol && p <= MaxProtocol && p > best {
			best = p
		}
	}
	return best
}

// OfferProtocols is the Protocols list of an agent that speaks 1 to max
// (MaxProtocol when max is 0 or more than this build speaks).
func OfferProtocols(max int) []int {
	if max <= 0 || max > MaxProtocol {
		max = MaxProtocol
	}
	ps := make([]int, 0, max)
	for p := 1; p <= max; p++ {
		ps = append(ps, p)
	}
	return ps
}

// CheckProtocol refuses an agent this kas cannot serve with a message that
// says which versions work.
func CheckProtocol(h Hello, kasVersion string) *RefusedError {
	if h.Negotiate() != 0 {
		return nil
	}
	return &RefusedError{
		Status: http.StatusUpgradeRequired,
		Reason: fmt.Sprintf("agentk %s speaks tunnel protocol %s; kas %s serves protocols %d to %d: run an agentk of the same release as kas",
			orUnknown(h.AgentVersion), joinInts(h.Offered()), kasVersion, MinProtocol, MaxProtocol),
	}
}

func joinInts(ps []int) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
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
	if p := hdr.Get(HeaderProtocols); p != "" {
		for f := range strings.SplitSeq(p, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return h, fmt.Errorf("%w: %s header %q is not a list of protocol numbers", ErrMalformedHandshake, HeaderProtocols, p)
			}
			if len(h.Protocols) == maxOffered {
				return h, fmt.Errorf("%w: %s header lists more than %d protocols", ErrMalformedHandshake, HeaderProtocols, maxOffered)
			}
			h.Protocols = append(h.Protocols, n)
		}
	}
	for _, f := range h.metadata() {
		*f.value = hdr.Get(f.header)
	}
	return h, h.Validate()
}

// SetHeader writes the hello onto a WebSocket upgrade request.
func (h Hello) SetHeader(hdr http.Header) {
	if h.Token != "" {
		hdr.Set("Authorization", "Bearer "+h.Token)
	}
	hdr.Set(HeaderProtocol, strconv.Itoa(h.Protocol))
	if len(h.Protocols) > 0 {
		hdr.Set(HeaderProtocols, joinInts(h.Protocols))
	}
	hdr.Set(HeaderAgentVersion, h.AgentVersion)
	for _, f := range h.metadata() {
		if *f.value != "" {
			hdr.Set(f.header, *f.value)
		}
	}
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
