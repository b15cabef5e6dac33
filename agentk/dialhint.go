package agentk

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
)

// dialHint says what to change when a dial to kas fails in a way whose
// raw error does not: a TLS dial (wss://, grpcs://) to a listener that
// speaks plain text, a plain dial to a TLS listener, or a certificate
// this agentk cannot verify. It is "" when there is nothing to add.
func dialHint(kasAddress string, err error) string {
	u, perr := url.Parse(kasAddress)
	if perr != nil {
		return ""
	}
	plain := map[string]string{"wss": "ws", "grpcs": "grpc"}
	secure := map[string]string{"ws": "wss", "grpc": "grpcs"}
	var rec tls.RecordHeaderError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &rec) && plain[u.Scheme] != "":
		return "kas answered in plain text, not TLS: its agent listener has no certificate. Use " +
			plain[u.Scheme] + "://" + strings.TrimPrefix(kasAddress, u.Scheme+"://") +
			" (the token then travels unencrypted), or give kas agent.listen.certificate_file and key_file"
	case secure[u.Scheme] != "" && (strings.Contains(err.Error(), "HTTP request to an HTTPS server") || strings.Contains(err.Error(), "malformed HTTP response")):
		return "kas's agent listener speaks TLS: use " + secure[u.Scheme] + "://" + strings.TrimPrefix(kasAddress, u.Scheme+"://")
	case errors.As(err, &unknownCA):
		return "kas's certificate is signed by a CA this agentk does not trust: pass that CA with --kas-ca-cert-file"
	case errors.As(err, &hostname):
		return "kas's certificate does not name the host in --kas-address: use a name it holds, or --kas-tls-server-name"
	}
	return ""
}
