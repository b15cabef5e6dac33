package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/redisserver"
	"kubetunnel/internal/testutil/stack"
)

// Several kas replicas (the real binary) share a real redis-server; a TCP
// load balancer on loopback stands in front of them, as in a cloud
// install; one agentk connects through it; kubectl goes through it too.

// newCluster starts n replicas and agentk, and waits until kubectl reaches
// the cluster through the balancer.
func newCluster(t *testing.T, n int, redisAddr string) *stack.Cluster {
	t.Helper()
	setup(t)
	ctx := t.Context()
	c, err := stack.NewCluster(ctx, t.TempDir(), binDir, cp, n, redisAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("%s\nagentk log:\n%s", c.Logs(), c.AgentLog())
		}
	})
	if err := c.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgentk(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "agentk to receive its config", func() bool {
		return strings.Contains(c.AgentLog(), "Config: new commit")
	})
	return c
}

// getNamespaces is `kubectl get namespaces` with a kubeconfig.
func getNamespaces(t *testing.T, kubeconfig string) (string, error) {
	out, errOut, err := kubectl(t, kubeconfig, "", "get", "namespaces", "-o", "name", "--request-timeout", "10s")
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, errOut)
	}
	return out, nil
}

// kubectl works whichever replica receives it, and comes back within 10 s
// after the replica holding the agent is killed with SIGKILL.
func TestHAAnyReplicaAndKill(t *testing.T) {
	redis := redisserver.Start(t)
	c := newCluster(t, 3, redis.Addr)

	for _, r := range c.Replicas {
		out, err := getNamespaces(t, r.Kubeconfig)
		if err != nil || !strings.Contains(out, "namespace/default") {
			t.Fatalf("kubectl via replica %d: %v %s", r.Index, err, out)
		}
	}
	for i := range 6 {
		if _, err := getNamespaces(t, c.Kubeconfig); err != nil {
			t.Fatalf("kubectl %d through the balancer: %v", i, err)
		}
	}
	holding := c.Holding()
	if len(holding) != 1 {
		t.Fatalf("%d replicas hold the agent, want 1", len(holding))
	}
	forwards := 0.0
	for _, r := range c.Replicas {
		v, _ := r.Metric("kas_peer_forwards_total", "result", "ok")
		forwards += v
	}
	if forwards == 0 {
		t.Error("no request was forwarded between replicas")
	}

	dead := holding[0]
	if err := dead.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var err error
	for time.Since(start) < 10*time.Second {
		if _, err = getNamespaces(t, c.Kubeconfig); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("kubectl still fails 10 s after the agent's replica was killed: %v", err)
	}
	t.Logf("kubectl through the balancer succeeded again %v after kill -9 of the agent's replica", time.Since(start).Round(time.Millisecond))
	for i := range 5 {
		if _, err := getNamespaces(t, c.Kubeconfig); err != nil {
			t.Errorf("kubectl %d after recovery: %v", i, err)
		}
	}
	if err := dead.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// Every replica is restarted in turn (SIGTERM, start again) while clients
// send a steady stream of requests through the balancer: none fails.
func TestHARollingRestart(t *testing.T) {
	redis := redisserver.Start(t)
	c := newCluster(t, 3, redis.Addr)
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 1000, 1000 // client-go's default of 5/s would be the bottleneck
	cs := kubernetes.NewForConfigOrDie(rc)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(who string, err error) {
		failed.Add(1)
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf("%s at %s: %v", who, time.Now().Format("15:04:05.000"), err))
	}
	// client-go as controllers use it.
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 1})
				switch {
				case err == nil:
					ok.Add(1)
				case ctx.Err() == nil:
					fail(fmt.Sprintf("client-go %d", i), err)
				}
				time.Sleep(20 * time.Millisecond) // a controller's pace, not a wait
			}
		}()
	}
	// And kubectl, a process per request.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			_, err := getNamespaces(t, c.Kubeconfig)
			switch {
			case err == nil:
				ok.Add(1)
			case ctx.Err() == nil:
				fail("kubectl", err)
			}
		}
	}()

	// served waits until the clients have had n more answers: traffic
	// flows before each restart and after the last.
	served := func(n int64) {
		t.Helper()
		from := ok.Load()
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d more requests answered", n), func() bool { return ok.Load() >= from+n })
	}
	for _, r := range c.Replicas {
		served(20)
		held := len(c.Holding()) > 0 && c.Holding()[0] == r
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		t.Logf("replica %d stopped (held the agent: %v)", r.Index, held)
		if err := r.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 15*time.Second, "the agent to be connected", func() bool { return len(c.Holding()) > 0 })
	}
	served(20)
	cancel()
	wg.Wait()
	t.Logf("%d requests during the rolling restart, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("requests failed during the rolling restart:\n%s", strings.Join(failures[:min(10, len(failures))], "\n"))
	}
	if ok.Load() < 100 {
		t.Errorf("only %d requests succeeded", ok.Load())
	}
	for _, r := range c.Replicas {
		if !strings.Contains(r.Log(), "kas stopped") {
			t.Errorf("replica %d did not stop gracefully", r.Index)
		}
	}
}

// Redis down: the replica holding the agent still serves it; another
// answers with a 503 that names the registry; once Redis is back (empty),
// everything works again with no kas restart.
func TestHARedisOutage(t *testing.T) {
	redis := redisserver.Start(t)
	c := newCluster(t, 2, redis.Addr)
	holding := c.Holding()
	if len(holding) != 1 {
		t.Fatalf("%d replicas hold the agent, want 1", len(holding))
	}
	holder, other := holding[0], c.Replicas[0]
	if other == holder {
		other = c.Replicas[1]
	}
	if _, err := getNamespaces(t, other.Kubeconfig); err != nil {
		t.Fatalf("kubectl via the other replica before the outage: %v", err)
	}

	redis.Kill()
	if _, err := getNamespaces(t, holder.Kubeconfig); err != nil {
		t.Errorf("kubectl via the agent's replica with Redis down: %v", err)
	}
	_, err := getNamespaces(t, other.Kubeconfig)
	const want = "is not connected to this kas replica and the agent registry is unreachable"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("kubectl via the other replica with Redis down: %v, want an error containing %q", err, want)
	}
	t.Logf("with Redis down, kubectl via the other replica: %v", err)

	redis.Restart()
	start := time.Now()
	testutil.Eventually(t, 20*time.Second, "kubectl via the other replica after Redis is back", func() bool {
		_, err := getNamespaces(t, other.Kubeconfig)
		return err == nil
	})
	t.Logf("cross-replica requests back %v after Redis restarted empty", time.Since(start).Round(time.Millisecond))
	if _, ok := stack.WaitLog(other.Log, "Agent registry (Redis) reachable again"); !ok {
		t.Errorf("replica %d did not log the recovery", other.Index)
	}
}
