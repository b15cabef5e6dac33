package tunnel

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
)

// FuzzReadHello feeds arbitrary bytes to the raw-TCP hello parser, which
// reads from unauthenticated peers: it must never panic, never accept a
// hello without a token and protocol, and never read past MaxHelloSize.
func FuzzReadHello(f *testing.F) {
	var good bytes.Buffer
	WriteHello(&good, Hello{Token: "t", AgentVersion: "v1", Protocol: 1})
	f.Add(good.Bytes())
	var meta bytes.Buffer
	WriteHello(&meta, Hello{Token: "t", AgentVersion: "v1", Protocol: 1, PodNamespace: "ns", PodName: "agentk-0", KubernetesVersion: "v1.37.0", GitCommit: "abc"})
	f.Add(meta.Bytes())
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(append(frameMagic[:], 0xff, 0xff, 0xff, 0xff))
	f.Add(append(frameMagic[:], 0, 0, 0, 2, '{', '}'))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := ReadHello(r)
		if read := len(data) - r.Len(); read > 12+MaxHelloSize {
			t.Fatalf("read %d bytes", read)
		}
		if err == nil && (h.Token == "" || h.Protocol <= 0) {
			t.Fatalf("accepted incomplete hello %+v", h)
		}
		if err == nil && (len(h.PodName) > MaxHelloMetadataLen || len(h.PodNamespace) > MaxHelloMetadataLen ||
			len(h.KubernetesVersion) > MaxHelloMetadataLen || len(h.GitCommit) > MaxHelloMetadataLen) {
			t.Fatalf("accepted oversized metadata %+v", h)
		}
		if err != nil && !errors.Is(err, ErrMalformedHandshake) && !errors.Is(err, ErrHelloTooLarge) {
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}

// FuzzHelloFromHeader covers the WebSocket handshake headers.
func FuzzHelloFromHeader(f *testing.F) {
	f.Add("Bearer abc", "1", "v1", "")
	f.Add("Basic abc", "x", "", "")
	f.Add("bearer   ", "-1", "v", "")
	f.Add("Bearer abc", "1", "v1", "agentk-7d9f-abcde")
	f.Fuzz(func(t *testing.T, auth, proto, version, podName string) {
		hdr := http.Header{}
		hdr.Set("Authorization", auth)
		hdr.Set(HeaderProtocol, proto)
		hdr.Set(HeaderAgentVersion, version)
		hdr.Set(HeaderPodName, podName)
		h, err := HelloFromHeader(hdr)
		if err == nil && (h.Token == "" || h.Protocol <= 0) {
			t.Fatalf("accepted incomplete hello %+v", h)
		}
		if err == nil && (h.PodName != podName || len(h.PodName) > MaxHelloMetadataLen) {
			t.Fatalf("pod name %q read as %q", podName, h.PodName)
		}
	})
}

// FuzzReadReply covers what agentk reads from whatever answers its dial.
func FuzzReadReply(f *testing.F) {
	var good bytes.Buffer
	WriteReply(&good, 401, "nope")
	f.Add(good.Bytes())
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = ReadReply(bytes.NewReader(data))
	})
}
