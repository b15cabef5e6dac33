package tunnel

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

var helloWithMetadata = Hello{
	Token: "secret-token", AgentVersion: "v1.2.3", Protocol: 1,
	PodNamespace: "gitlab-agent", PodName: "agentk-7d9f-abcde",
	KubernetesVersion: "v1.37.0", GitCommit: "0123456789abcdef0123456789abcdef01234567",
}

// The agent's metadata travels on both handshake forms, field for field.
func TestHelloMetadataRoundTrip(t *testing.T) {
	hdr := http.Header{}
	helloWithMetadata.SetHeader(hdr)
	got, err := HelloFromHeader(hdr)
	if err != nil || got != helloWithMetadata {
		t.Errorf("WebSocket form: got %+v, %v", got, err)
	}
	if hdr.Get(HeaderPodName) != "agentk-7d9f-abcde" {
		t.Errorf("headers %v", hdr)
	}

	var frame bytes.Buffer
	if err := WriteHello(&frame, helloWithMetadata); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(frame.String(), `"pod_namespace":"gitlab-agent"`) || !strings.Contains(frame.String(), `"git_commit":"0123`) {
		t.Errorf("frame %q lacks the JSON names", frame.String())
	}
	got, err = ReadHello(&frame)
	if err != nil || got != helloWithMetadata {
		t.Errorf("raw TCP form: got %+v, %v", got, err)
	}
}

// An agent that sends no metadata (an older agentk) still connects.
func TestHelloWithoutMetadata(t *testing.T) {
	hdr := http.Header{}
	Hello{Token: "t", AgentVersion: "v0", Protocol: 1}.SetHeader(hdr)
	for _, k := range []string{HeaderPodNamespace, HeaderPodName, HeaderKubernetesVersion, HeaderGitCommit} {
		if _, ok := hdr[k]; ok {
			t.Errorf("empty %s sent", k)
		}
	}
	if _, err := HelloFromHeader(hdr); err != nil {
		t.Fatal(err)
	}
	// An older agentk's frame: no metadata fields at all.
	body := `{"token":"t","agent_version":"v0","protocol":1}`
	frame := append(frameMagic[:], 0, 0, 0, byte(len(body)))
	if _, err := ReadHello(bytes.NewReader(append(frame, body...))); err != nil {
		t.Fatal(err)
	}
}

func TestHelloMetadataTooLong(t *testing.T) {
	h := helloWithMetadata
	h.PodName = strings.Repeat("a", MaxHelloMetadataLen+1)
	hdr := http.Header{}
	h.SetHeader(hdr)
	if _, err := HelloFromHeader(hdr); !errors.Is(err, ErrMalformedHandshake) || !strings.Contains(err.Error(), "pod_name is 257 bytes") {
		t.Errorf("got %v", err)
	}
}

// The metadata is logged, the token is not.
func TestHelloLogValue(t *testing.T) {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "hello", helloWithMetadata)
	for _, want := range []string{"hello.pod_namespace=gitlab-agent", "hello.pod_name=agentk-7d9f-abcde", "hello.kubernetes_version=v1.37.0", "hello.agent_version=v1.2.3"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("log %q lacks %s", b.String(), want)
		}
	}
	if strings.Contains(b.String(), "secret-token") {
		t.Errorf("log has the token: %s", b.String())
	}
}

// Over every transport, kas's authenticator sees the metadata agentk sent.
func TestHelloMetadataEveryTransport(t *testing.T) {
	for _, scheme := range []string{"ws", "wss", "grpc", "grpcs"} {
		t.Run(scheme, func(t *testing.T) {
			ts := startServer(t, scheme)
			got := make(chan Hello, 1)
			ts.srv.Authenticate = func(_ context.Context, h Hello) (string, error) {
				got <- h
				return "agent1", nil
			}
			d := ts.dialer(goodToken)
			want := helloWithMetadata
			want.Token = goodToken
			d.Hello = want
			sess, err := d.Dial(context.Background())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			sess.Close()
			if h := <-got; h != want {
				t.Errorf("kas saw %+v, want %+v", h, want)
			}
		})
	}
}
