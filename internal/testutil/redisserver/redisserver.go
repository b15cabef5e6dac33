// Package redisserver runs a real redis-server on a free loopback port for
// tests: no persistence, its own temp dir, stopped at the end of the test.
// A missing redis-server fails the test (CI installs it, see .ci/run).
package redisserver

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kubetunnel/internal/testutil"
)

// Server is a running redis-server.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// Password is set when started with one (requirepass).
	Password string

	t    testing.TB
	bin  string
	dir  string
	args []string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}
}

// Options change how redis-server starts.
type Options struct {
	// Password, when set, is required from clients (requirepass).
	Password string
	// Args are extra redis-server arguments.
	Args []string
}

// Start runs redis-server on a free port; it is killed when the test ends.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server: not in -short")
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is required for this test (apt-get install -y redis-server; .ci/run installs it): %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), Password: o.Password}
	ports, err := testutil.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.args = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--daemonize", "no", "--protected-mode", "no"}
	if o.Password != "" {
		s.args = append(s.args, "--requirepass", o.Password)
	}
	s.args = append(s.args, o.Args...)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) start() error {
	logPath := filepath.Join(s.dir, "redis.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cmd.Wait()
		f.Close()
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server exited at start:\n%s", b)
		default:
		}
		if s.ping() == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(logPath)
	return fmt.Errorf("redis-server on %s not ready within 10s:\n%s", s.Addr, b)
}

// ping speaks just enough RESP to see the server answer.
func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	// With requirepass, an unauthenticated PING is refused: still up.
	if strings.HasPrefix(line, "+PONG") || strings.Contains(line, "NOAUTH") {
		return nil
	}
	return fmt.Errorf("unexpected answer %q", line)
}

// Kill stops the server at once (SIGKILL), losing its data, as a crash
// would. It is safe to call twice.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	// The port was just released; retry briefly if it is still busy.
	var err error
	for range 50 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatal(err)
}
