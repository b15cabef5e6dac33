package kubelet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

func (k *Kubelet) serveAttach(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeAttach(w, r, echoAttacher{}, podName(r), r.PathValue("uid"), r.PathValue("container"), opts,
		streamIdleTimeout, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// AttachGreeting is the first line an attach session writes, followed by
// the pod name, a slash and the container name.
const AttachGreeting = "attached to "

// echoAttacher plays a container whose main process greets the attaching
// client and then echoes its stdin back to stdout until end of input. A
// client that sends no stdin gets a tick line every second instead, until
// it goes away.
type echoAttacher struct{}

func (echoAttacher) AttachContainer(ctx context.Context, name, _, container string, in io.Reader, out, _ io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize) error {
	if out == nil {
		out = discardCloser{}
	}
	if _, err := fmt.Fprintf(out, "%s%s/%s\n", AttachGreeting, name, container); err != nil {
		return fmt.Errorf("write greeting: %w", err)
	}
	if in != nil {
		if _, err := io.Copy(out, in); err != nil {
			return fmt.Errorf("echo stdin: %w", err)
		}
		return nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if _, err := fmt.Fprintf(out, "tick %d\n", n); err != nil {
			return nil // the client went away
		}
	}
}

type discardCloser struct{}

func (discardCloser) Write(p []byte) (int, error) { return len(p), nil }
func (discardCloser) Close() error                { return nil }
