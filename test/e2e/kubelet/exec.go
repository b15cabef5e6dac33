package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// streamIdleTimeout closes exec, attach and port-forward sessions that
// carry no data for this long. The real kubelet defaults to four hours;
// tests are much shorter.
const streamIdleTimeout = 5 * time.Minute

func (k *Kubelet) serveExec(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	remotecommand.ServeExec(w, r, localExecutor{k}, podName(r), r.PathValue("uid"), r.PathValue("container"), cmd, opts,
		streamIdleTimeout, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// localExecutor runs the exec'd command as a process on this machine, so
// "kubectl exec pod -- echo hi" really runs echo. There is no pseudo
// terminal: with a TTY requested, stderr is merged into stdout.
type localExecutor struct{ k *Kubelet }

func (e localExecutor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	if len(cmd) == 0 {
		return errors.New("no command given")
	}
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	// Assigning a nil io.WriteCloser to io.Writer yields a nil Writer, which
	// os/exec turns into /dev/null for streams the client did not ask for.
	c.Stdout = out
	c.Stderr = errOut
	if tty {
		c.Stderr = out
	}
	// A child that leaves a grandchild holding stdout open must not hang
	// the session.
	c.WaitDelay = time.Second
	c.SysProcAttr = sysProcAttr()
	var stdin io.WriteCloser
	if in != nil {
		// Not c.Stdin = in: Wait would then also wait for the client to
		// close its input, so "kubectl exec -i pod -- true" would hang
		// until the user pressed Ctrl-D.
		var err error
		if stdin, err = c.StdinPipe(); err != nil {
			return fmt.Errorf("stdin pipe: %w", err)
		}
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %q: %w", cmd[0], err)
	}
	if stdin != nil {
		// Ends at the client's end of input, or when ServeExec closes the
		// connection after this method returns.
		e.k.goTracked(func() {
			_, _ = io.Copy(stdin, in)
			stdin.Close()
		})
	}
	if resize != nil {
		// Without a pseudo terminal there is nothing to resize, but the
		// sender blocks until each event is taken.
		e.k.goTracked(func() {
			for range resize {
			}
		})
	}
	err := c.Wait()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		// ServeExec reports the exit code to the client only for this type.
		return &utilexec.ExitErrorWrapper{ExitError: exitErr}
	}
	return err
}
