package gitrepo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// sshServer is a git server over ssh: it accepts one client key and runs
// git-upload-pack for exec requests, as sshd with git does.
type sshServer struct {
	addr string
	ln   net.Listener
	cfg  *ssh.ServerConfig
	wg   sync.WaitGroup

	mu    sync.Mutex // guards conns
	conns []net.Conn
}

func newSSHServer(t *testing.T, host ssh.Signer, client ssh.PublicKey) *sshServer {
	t.Helper()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) != string(client.Marshal()) {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(host)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{addr: ln.Addr().String(), ln: ln, cfg: cfg}
	s.wg.Go(s.accept)
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *sshServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(c) })
	}
}

func (s *sshServer) serve(c net.Conn) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		return // e.g. the client refused the host key
	}
	s.wg.Go(func() { ssh.DiscardRequests(reqs) })
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.session(ch, chReqs) })
	}
}

func (s *sshServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(false, nil)
			continue
		}
		// The payload is a string: uint32 length, then "git-upload-pack '/path'".
		if len(req.Payload) < 4 {
			req.Reply(false, nil)
			return
		}
		command := string(req.Payload[4:])
		name, arg, _ := strings.Cut(command, " ")
		if name != "git-upload-pack" {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		cmd := exec.Command("git-upload-pack", strings.Trim(arg, "'"))
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
		}
		ch.CloseWrite()
		ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
		s.wg.Go(func() { io.Copy(io.Discard, ch) }) // drain until the client closes
		return
	}
}

func TestSSH(t *testing.T) {
	if _, err := exec.LookPath("git-upload-pack"); err != nil {
		t.Fatal("git-upload-pack is required in PATH (it comes with git)")
	}
	src := newSource(t)
	commit := src.commit(map[string]string{"a.yaml": "1"})
	keyFile, clientKey := newSSHKey(t, "id_ed25519")
	_, hostKey := newSSHKey(t, "host")
	_, otherHostKey := newSSHKey(t, "other")
	srv := newSSHServer(t, hostKey, clientKey.PublicKey())
	_, port, _ := net.SplitHostPort(srv.addr)
	knownHosts := func(key ssh.Signer) string {
		return writeFile(t, "known_hosts", fmt.Sprintf("[127.0.0.1]:%s %s", port, ssh.MarshalAuthorizedKey(key.PublicKey())))
	}
	url := fmt.Sprintf("ssh://git@%s%s", srv.addr, src.dir)

	c := newCache(t,
		Repository{ID: "good", URL: url, SSHKeyFile: keyFile, KnownHostsFile: knownHosts(hostKey)},
		Repository{ID: "mismatch", URL: url, SSHKeyFile: keyFile, KnownHostsFile: knownHosts(otherHostKey)},
		Repository{ID: "unknown", URL: url, SSHKeyFile: keyFile, KnownHostsFile: writeFile(t, "known_hosts", "[example.com]:22 "+string(ssh.MarshalAuthorizedKey(hostKey.PublicKey())))},
	)
	if !fetch(t, c, "good") {
		t.Fatal("fetch over ssh: changed = false")
	}
	if got := resolve(t, c, "good", Ref{}); got != commit {
		t.Errorf("default branch = %s, want %s", got, commit)
	}
	// kas must not talk to a server whose host key it was not given.
	for id, want := range map[string]string{
		"mismatch": "the server's host key differs from the one in known_hosts_file",
		"unknown":  "the server's host key is not in known_hosts_file",
	} {
		_, err := c.Fetch(context.Background(), id)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fetch from %s: %v, want %q", id, err, want)
		}
	}
}
