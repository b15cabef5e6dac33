package bench

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/rancher/remotedialer"
)

// rdProcEnv, set, makes this test binary run one end of
// rancher/remotedialer as a process of its own (remotedialer has no
// binaries), for BenchmarkGetLatencyProcesses to set beside the kas and
// agentk processes:
//
//	"server <API server URL> <CA file> [<cert file> <key file>]"
//	                                    prints its front door's address and the agents'
//	                                    (the same, unless the front door has TLS with the
//	                                    certificate given), serves until stdin closes
//	"agent <server address>"            connects, runs until stdin closes
//
// The setup is startRemotedialerAPI's (Rancher's): the server's reverse
// proxy holds the cluster's token and talks TLS to the API server over a
// connection the agent dials for it; its front door is plain HTTP.
const rdProcEnv = "KUBETUNNEL_BENCH_REMOTEDIALER"

// frontEnv set to "tls" gives both front doors in
// BenchmarkGetLatencyProcesses, kas's and the remotedialer server
// process's, TLS; unset, both are plain HTTP, as in BenchmarkRealAPIPaths
// and as the proxy path's goals are set.
const frontEnv = "KUBETUNNEL_BENCH_FRONT"

func runRemotedialerProc(spec string) int {
	f := strings.Fields(spec)
	var err error
	switch {
	case len(f) == 3 && f[0] == "server":
		err = rdServerProc(f[1], f[2], "", "")
	case len(f) == 5 && f[0] == "server":
		err = rdServerProc(f[1], f[2], f[3], f[4])
	case len(f) == 2 && f[0] == "agent":
		err = rdAgentProc(f[1])
	default:
		err = errors.New(`want "server <API server URL> <CA file>" or "agent <server address>"`)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", rdProcEnv, spec, err)
		return 1
	}
	return 0
}

func rdServerProc(apiURL, caFile, certFile, keyFile string) error {
	api, err := url.Parse(apiURL)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in %s", caFile)
	}
	rs := newRDServer(api, pool)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rs.mux}
	if certFile == "" {
		go srv.Serve(ln)
		fmt.Println(ln.Addr().String(), ln.Addr().String())
		_, _ = io.Copy(io.Discard, os.Stdin)
		return srv.Close()
	}
	// The agent's link stays plain ws://, as agentk's to kas is: only the
	// client's front door gets TLS.
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return errors.Join(err, ln.Close())
	}
	tlsSrv := &http.Server{Handler: rs.proxy}
	go srv.Serve(ln)
	go tlsSrv.ServeTLS(front, certFile, keyFile)
	fmt.Println(front.Addr().String(), ln.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return errors.Join(srv.Close(), tlsSrv.Close())
}

func rdAgentProc(addr string) error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = remotedialer.ClientConnectWithOpts(ctx, "ws://"+addr+"/connect", http.Header{"X-Tunnel-ID": {rdClientKey}}, nil,
			func(string, string) bool { return true }, nil, &remotedialer.ConnectOpts{Backoff: remotedialer.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}})
	}()
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	<-done
	return nil
}

// rdProc is one remotedialer end running as a child process.
type rdProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startRdProc starts this binary in rdProcEnv mode spec and returns the
// first line it prints (the server's two addresses; the agent prints nothing,
// so pass firstLine false for it).
func startRdProc(spec string, firstLine bool) (*rdProc, string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), rdProcEnv+"="+spec)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	p := &rdProc{cmd: cmd, stdin: stdin}
	var line string
	if firstLine {
		line, err = bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			return nil, "", errors.Join(fmt.Errorf("remotedialer %s did not start: %q, %w", strings.Fields(spec)[0], line, err), p.stop())
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return p, strings.TrimSpace(line), nil
}

func (p *rdProc) pid() int { return p.cmd.Process.Pid }

// stop closes the process's stdin and waits for it to exit, killing it
// after 10 s.
func (p *rdProc) stop() error {
	p.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		return errors.New("remotedialer process did not exit within 10s of its stdin closing")
	}
}
