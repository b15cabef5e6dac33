package tunnel

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

var helloWithMetadata = Hello{
	Token: "secret-token", AgentVersion: "v1.2.3", Protocol: 1, Protocols: []int{1, 2},
	PodNamespace: "gitlab-agent", PodName: "agentk-7d9f-abcde",
	KubernetesVersion: "v1.37.0", GitCommit: "0123456789abcdef0123456789abcdef01234567",
}

// The agent's metadata travels on both handshake forms, field for field.
func TestHelloMetadataRoundTrip(t *testing.T) {
	hdr := http.Header{}
	helloWithMetadata.SetHeader(hdr)
	got, err := HelloFromHeader(hdr)
	if err != nil || !reflect.DeepEqual(got, helloWithMetadata) {
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
	if err != nil || !reflect.DeepEqual(got, helloWithMetadata) {
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
			if h := <-got; !reflect.DeepEqual(h, want) {
				t.Errorf("kas saw %+v, want %+v", h, want)
			}
		})
	}
}

// kas picks the highest protocol both ends speak; an agentk from before
// protocol 2 (no list) gets protocol 1; one offering only what this kas
// does not speak is refused with both ranges named.
func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		h    Hello
		want int
	}{
		{Hello{Protocol: 1}, 1},
		{Hello{Protocol: 1, Protocols: []int{1}}, 1},
		{Hello{Protocol: 1, Protocols: []int{1, 2}}, 2},
		{Hello{Protocol: 1, Protocols: []int{2, 1, 7}}, 2},
		{Hello{Protocol: 7}, 0},
	} {
		if got := tc.h.Negotiate(); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.h.Offered(), got, tc.want)
		}
	}
	r := CheckProtocol(Hello{AgentVersion: "v9", Protocol: 7, Protocols: []int{7, 8}}, "v1")
	if r == nil || r.Status != http.StatusUpgradeRequired || !strings.Contains(r.Reason, "speaks tunnel protocol 7,8; kas v1 serves protocols 1 to 2") {
		t.Errorf("refusal %v", r)
	}
	// The list survives the WebSocket form; a bad one is a malformed hello.
	hdr := http.Header{}
	Hello{Token: "t", Protocol: 1, Protocols: OfferProtocols(0)}.SetHeader(hdr)
	if hdr.Get(HeaderProtocols) != "1,2" || hdr.Get(HeaderProtocol) != "1" {
		t.Errorf("headers %v", hdr)
	}
	for _, bad := range []string{"1,x", "0", strings.Repeat("1,", 20) + "1"} {
		hdr.Set(HeaderProtocols, bad)
		if _, err := HelloFromHeader(hdr); !errors.Is(err, ErrMalformedHandshake) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if got := OfferProtocols(1); !reflect.DeepEqual(got, []int{1}) {
		t.Errorf("OfferProtocols(1) = %v", got)
	}
}
