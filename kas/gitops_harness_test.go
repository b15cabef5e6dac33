package kas

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"kubetunnel/tunnel/mux"

	"kubetunnel/api/rpc"
	"kubetunnel/gitops/gitrepo"
	tu "kubetunnel/internal/testutil"
	"kubetunnel/tunnel"
	"kubetunnel/version"
)

const manifestProject = "group/manifests"

// newGitOpsEnv is newEnv with a manifest project (group/manifests) next
// to the config project. mutate may change the config before kas starts.
func newGitOpsEnv(t *testing.T, mutate func(*Config)) (*env, *tu.GitRepo) {
	t.Helper()
	e := newEnv(t, "ws")
	repo := tu.NewGitRepo(t)
	e.cfg.Repositories = append(e.cfg.Repositories, repoEntry(manifestProject, repo.URL()))
	// An agent reads only its config project unless given more.
	e.cfg.Agents[0].Projects = []string{manifestProject}
	e.cfg.Agent.GitOps.PollPeriod = 100 * time.Millisecond
	if mutate != nil {
		mutate(e.cfg)
	}
	return e, repo
}

// startWith is env.start with a hook that runs between New and Run, to
// shorten the timers of kas's servers.
func (e *env) startWith(hook func(*Server)) {
	e.t.Helper()
	logger, sink := tu.NewLogger(e.t)
	srv, err := New(e.cfg, logger)
	if err != nil {
		e.t.Fatal(err)
	}
	srv.Session = fastSession
	if hook != nil {
		hook(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(ctx); err != nil {
			e.t.Errorf("kas Run: %v", err)
		}
	}()
	select {
	case <-srv.Ready():
	case <-done:
		e.t.Fatal("kas stopped before it was ready")
	}
	e.cfg.Agent.Listen.Address = srv.Addr("agent").String()
	e.cfg.Agent.KubernetesAPI.Listen.Address = srv.Addr("kubernetes_api").String()
	e.kas, e.kasLog = srv, sink
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(e.stop)
}

// obsURL is the observability listener's base URL.
func (e *env) obsURL() string { return "http://" + e.kas.Addr("observability").String() }

// getJSON GETs an observability URL and decodes its JSON body into v.
func (e *env) getJSON(path string, v any) int {
	e.t.Helper()
	resp, err := http.Get(e.obsURL() + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, v); err != nil {
		e.t.Fatalf("GET %s: %s: not JSON: %v\n%s", path, resp.Status, err, body)
	}
	return resp.StatusCode
}

// testAgent is a bare agent: a tunnel session and a gRPC client over it,
// as agentk dials them, without agentk's modules. Its gRPC client keeps
// gRPC's default 4 MiB receive limit.
type testAgent struct {
	sess   *mux.Session
	cc     *grpc.ClientConn
	gitops rpc.GitOpsClient
	config rpc.ConfigurationClient
}

// dialAgent connects a testAgent; it is closed before kas stops.
func (e *env) dialAgent() *testAgent {
	e.t.Helper()
	d := &tunnel.Dialer{
		Address: e.address(),
		Hello:   tunnel.Hello{Token: agentToken, AgentVersion: version.Version, Protocol: tunnel.MaxProtocol},
		Session: fastSession,
	}
	sess, err := d.Dial(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := grpc.NewClient("passthrough:///kas",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return sess.OpenStream() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		sess.Close()
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		cc.Close()
		sess.Close()
	})
	return &testAgent{sess: sess, cc: cc, gitops: rpc.NewGitOpsClient(cc), config: rpc.NewConfigurationClient(cc)}
}

// manifestSet is one Header…Trailer sequence as the agent reassembles it.
type manifestSet struct {
	commit string
	paths  []string
	data   map[string][]byte
	// messages counts the Object messages (more than files when split).
	messages int
	// at is when the Trailer arrived.
	at time.Time
}

// watch is a GetObjectsToSynchronize call read in the background.
type watch struct {
	sets chan manifestSet
	err  chan error // the call's end: nil for a clean EOF
	stop func()
}

func (a *testAgent) watch(t *testing.T, req *rpc.ObjectsToSynchronizeRequest) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := a.gitops.GetObjectsToSynchronize(ctx, req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	w := &watch{sets: make(chan manifestSet, 16), err: make(chan error, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.err <- readSets(ctx, stream, w.sets)
	}()
	var once sync.Once
	w.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(w.stop)
	return w
}

// readSets reassembles sets the way the GitOps contract says: consecutive
// Objects with one source are one file.
func readSets(ctx context.Context, stream grpc.ServerStreamingClient[rpc.ObjectsToSynchronizeResponse], sets chan<- manifestSet) error {
	var cur *manifestSet
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch m := msg.Message.(type) {
		case *rpc.ObjectsToSynchronizeResponse_Header_:
			cur = &manifestSet{commit: m.Header.CommitId, data: map[string][]byte{}}
		case *rpc.ObjectsToSynchronizeResponse_Object_:
			cur.messages++
			src := m.Object.Source
			if n := len(cur.paths); n == 0 || cur.paths[n-1] != src {
				cur.paths = append(cur.paths, src)
			}
			cur.data[src] = append(cur.data[src], m.Object.Data...)
		case *rpc.ObjectsToSynchronizeResponse_Trailer_:
			cur.at = time.Now()
			select {
			case sets <- *cur:
			case <-ctx.Done():
				return ctx.Err()
			}
			cur = nil
		}
	}
}

// next waits for the next set.
func (w *watch) next(t *testing.T, within time.Duration) manifestSet {
	t.Helper()
	select {
	case s := <-w.sets:
		return s
	case err := <-w.err:
		t.Fatalf("stream ended before a set: %v", err)
	case <-time.After(within):
		t.Fatalf("no set within %v", within)
	}
	panic("unreachable")
}

// quiet checks that nothing arrives for a while.
func (w *watch) quiet(t *testing.T, d time.Duration, why string) {
	t.Helper()
	select {
	case s := <-w.sets:
		t.Fatalf("%s: got a set for %s with %q", why, s.commit, s.paths)
	case err := <-w.err:
		t.Fatalf("%s: stream ended: %v", why, err)
	case <-time.After(d):
	}
}

// end waits for the call to end and returns its error.
func (w *watch) end(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-w.err:
		return err
	case s := <-w.sets:
		t.Fatalf("want the stream to end, got a set for %s with %q", s.commit, s.paths)
	case <-time.After(within):
		t.Fatalf("stream still open after %v", within)
	}
	panic("unreachable")
}

// waitFetched waits until kas's mirror of a repository has commit on its
// default branch.
func (e *env) waitFetched(id, commit string) {
	e.t.Helper()
	tu.Eventually(e.t, setTimeout, "kas to fetch "+commit, func() bool {
		c, err := e.kas.repoSet.Resolve(id, gitrepo.Ref{})
		return err == nil && c == commit
	})
}

// waitSent waits until the status API shows commit as sent for the
// manifest project (kas records it just after the Trailer goes out), and
// returns the agent's status.
func (e *env) waitSent(commit string) AgentStatus {
	e.t.Helper()
	var st AgentStatus
	tu.Eventually(e.t, setTimeout, "status to show "+commit+" sent", func() bool {
		st = AgentStatus{} // keys left out of the JSON would keep old values
		e.getJSON("/api/v1/agents/"+agentName, &st)
		for _, p := range st.Projects {
			if p.ID == manifestProject && p.SentCommit == commit {
				return true
			}
		}
		return false
	})
	return st
}
