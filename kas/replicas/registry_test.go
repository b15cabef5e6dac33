package replicas

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/goleak"

	tu "kubetunnel/internal/testutil"
	"kubetunnel/internal/testutil/redisserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: addr, MaxRetries: 1, DialTimeout: time.Second, ReadTimeout: time.Second,
		DisableIdentity: true, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// replica is a Registry running in the background as one kas runs it.
type replica struct {
	*Registry
	client  *redis.Client
	metrics *Metrics
	stop    func()
}

func startReplica(t *testing.T, addr, self string, ttl, refresh time.Duration) *replica {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	logger, _ := tu.NewLogger(t)
	c := newClient(t, addr)
	r := NewRegistry(RegistryConfig{
		Client: c, KeyPrefix: "test", TTL: ttl, RefreshPeriod: refresh,
		Timeout: time.Second, Logger: logger.With("replica", self), Metrics: m,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx, self)
	}()
	tu.Eventually(t, 5*time.Second, "registry to start", func() bool { return r.Self() == self })
	rep := &replica{Registry: r, client: c, metrics: m, stop: func() { cancel(); <-done }}
	t.Cleanup(rep.stop)
	return rep
}

func waitLookup(t *testing.T, r *replica, agent string, want ...string) {
	t.Helper()
	slices.Sort(want)
	tu.EventuallyNoError(t, 10*time.Second, fmt.Sprintf("lookup %q from %s to give %v", agent, r.Self(), want), func() error {
		got, err := r.Lookup(context.Background(), agent)
		slices.Sort(got)
		if err == nil && !slices.Equal(got, want) {
			err = fmt.Errorf("got %v", got)
		}
		return err
	})
}

// Replicas record the agents they hold, several replicas may hold one
// agent, a replica never sees itself, and an agent that left is gone.
func TestRegistryRegisterLookupUnregister(t *testing.T) {
	srv := redisserver.Start(t)
	a := startReplica(t, srv.Addr, "http://a:8155", time.Minute, 20*time.Second)
	b := startReplica(t, srv.Addr, "http://b:8155", time.Minute, 20*time.Second)
	c := startReplica(t, srv.Addr, "http://c:8155", time.Minute, 20*time.Second)

	a.Register("prod")
	b.Register("prod")
	a.Register("staging")
	waitLookup(t, c, "prod", "http://a:8155", "http://b:8155")
	waitLookup(t, a, "prod", "http://b:8155")
	waitLookup(t, c, "staging", "http://a:8155")
	waitLookup(t, c, "nosuch")

	// The key's own expiry covers its members: nobody refreshing it means
	// it goes away by itself.
	ttl, err := c.client.PTTL(context.Background(), c.Key("prod")).Result()
	if err != nil || ttl <= 50*time.Second || ttl > time.Minute {
		t.Errorf("PTTL of %s = %v (%v), want about a minute", c.Key("prod"), ttl, err)
	}

	a.Unregister("prod")
	waitLookup(t, c, "prod", "http://b:8155")
	// A replica that stops removes its entries.
	b.stop()
	waitLookup(t, c, "prod")
	if n, _ := c.client.Exists(context.Background(), c.Key("prod")).Result(); n != 0 {
		t.Errorf("%s still exists with no member", c.Key("prod"))
	}
	if v := testutil.ToFloat64(a.metrics.RegistryUp); v != 1 {
		t.Errorf("kas_agent_registry_up = %v, want 1", v)
	}
}

// A replica that dies without cleaning up (here: its Redis connection is
// gone) leaves entries that expire by themselves after the TTL.
func TestRegistryEntriesExpire(t *testing.T) {
	srv := redisserver.Start(t)
	a := startReplica(t, srv.Addr, "http://a:8155", time.Second, 200*time.Millisecond)
	b := startReplica(t, srv.Addr, "http://b:8155", time.Second, 200*time.Millisecond)
	a.Register("prod")
	waitLookup(t, b, "prod", "http://a:8155")
	// Still there, at every look, once a's refreshes have carried its
	// entry past two TTLs beyond the first write: a member's score is when
	// it expires, so that is real time Redis counted, not a guess.
	first, err := b.client.ZScore(context.Background(), b.Key("prod"), "http://a:8155").Result()
	if err != nil {
		t.Fatal(err)
	}
	tu.EventuallyNoError(t, 10*time.Second, "a's refreshes to outlive two TTLs", func() error {
		got, err := b.Lookup(context.Background(), "prod")
		if err != nil || !slices.Equal(got, []string{"http://a:8155"}) {
			t.Fatalf("lookup while a refreshes: %v (err %v), want a", got, err)
		}
		score, err := b.client.ZScore(context.Background(), b.Key("prod"), "http://a:8155").Result()
		if err != nil || score < first+float64((2*time.Second).Milliseconds()) {
			return fmt.Errorf("expiry %v after the first %v (err %v)", score, first, err)
		}
		return nil
	})

	a.client.Close() // a can no longer write: as if killed
	a.stop()
	start := time.Now()
	waitLookup(t, b, "prod")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stale entry lived %v after the replica died, TTL is 1s", d)
	}
	tu.Eventually(t, 3*time.Second, "the key to expire", func() bool {
		n, _ := b.client.Exists(context.Background(), b.Key("prod")).Result()
		return n == 0
	})
}

// Redis restarted empty: entries are written back without any restart,
// and Redis down makes lookups fail with the cause, then recover.
func TestRegistryRedisRestart(t *testing.T) {
	srv := redisserver.Start(t)
	a := startReplica(t, srv.Addr, "http://a:8155", 3*time.Second, time.Second)
	b := startReplica(t, srv.Addr, "http://b:8155", 3*time.Second, time.Second)
	a.Register("prod")
	waitLookup(t, b, "prod", "http://a:8155")

	srv.Kill()
	_, err := b.Lookup(context.Background(), "prod")
	if err == nil {
		t.Fatal("lookup with Redis down succeeded")
	}
	t.Logf("lookup with Redis down: %v", err)
	tu.Eventually(t, 5*time.Second, "registry_up to be 0", func() bool { return testutil.ToFloat64(a.metrics.RegistryUp) == 0 })
	// Changes while Redis is down are written once it is back.
	a.Register("staging")

	srv.Restart()
	waitLookup(t, b, "prod", "http://a:8155")
	waitLookup(t, b, "staging", "http://a:8155")
	if v := testutil.ToFloat64(a.metrics.RegistryErrors.WithLabelValues("refresh")) + testutil.ToFloat64(a.metrics.RegistryErrors.WithLabelValues("register")); v == 0 {
		t.Error("no registry errors counted while Redis was down")
	}
	tu.Eventually(t, 5*time.Second, "registry_up to be 1", func() bool { return testutil.ToFloat64(a.metrics.RegistryUp) == 1 })
}

// A replica shutting down shortens its entries, and lookups offer it
// last.
func TestRegistryDrainingReplicaLast(t *testing.T) {
	srv := redisserver.Start(t)
	a := startReplica(t, srv.Addr, "http://a:8155", time.Minute, 20*time.Second)
	b := startReplica(t, srv.Addr, "http://b:8155", time.Minute, 20*time.Second)
	c := startReplica(t, srv.Addr, "http://c:8155", time.Minute, 20*time.Second)
	a.Register("prod")
	b.Register("prod")
	waitLookup(t, c, "prod", "http://a:8155", "http://b:8155")
	a.Drain(5 * time.Second)
	tu.Eventually(t, 5*time.Second, "a's entry to be shortened", func() bool {
		s, err := c.client.ZScore(context.Background(), c.Key("prod"), "http://a:8155").Result()
		return err == nil && time.UnixMilli(int64(s)).Before(time.Now().Add(6*time.Second))
	})
	for i := range 20 {
		urls, err := c.Lookup(context.Background(), "prod")
		if err != nil || !slices.Equal(urls, []string{"http://b:8155", "http://a:8155"}) {
			t.Fatalf("lookup %d: %v %v, want b before the draining a", i, urls, err)
		}
	}
	// A replica that registers an agent while draining writes it with the
	// short expiry too.
	a.Register("staging")
	waitLookup(t, c, "staging", "http://a:8155")
	s, _ := c.client.ZScore(context.Background(), c.Key("staging"), "http://a:8155").Result()
	if left := time.Until(time.UnixMilli(int64(s))); left > 6*time.Second {
		t.Errorf("entry written while draining expires in %v, want under 5s", left)
	}
}

// Fresh entries come in random order, so load spreads over replicas.
func TestRegistryLookupSpreads(t *testing.T) {
	srv := redisserver.Start(t)
	c := startReplica(t, srv.Addr, "http://c:8155", time.Minute, 20*time.Second)
	var peers []string
	for i := range 3 {
		p := startReplica(t, srv.Addr, fmt.Sprintf("http://p%d:8155", i), time.Minute, 20*time.Second)
		p.Register("prod")
		peers = append(peers, p.Self())
	}
	waitLookup(t, c, "prod", peers...)
	first := map[string]int{}
	for range 60 {
		urls, err := c.Lookup(context.Background(), "prod")
		if err != nil {
			t.Fatal(err)
		}
		first[urls[0]]++
	}
	if len(first) != 3 {
		t.Errorf("first choice over 60 lookups: %v, want all three peers", first)
	}
}
