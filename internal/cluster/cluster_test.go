package cluster

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/flood"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/redisconn"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testsvc"
	tu "github.com/portcullis/portcullis/internal/testutil"
)

// replica is one node with its own lists and guard, as a gateway has.
type replica struct {
	n     *Node
	lists *iplist.Lists
	guard *flood.Guard
	logs  *tu.SyncBuffer
	reg   *prometheus.Registry
}

type replicaOpts struct {
	threshold int
	boot      []netip.Prefix // IP_BLACKLIST
	probe     time.Duration  // ProbeEvery (default 50 ms)
	resync    time.Duration  // ResyncEvery (default 300 ms)
	hook      func(loop string)
	// afterReplay runs in the recovery after the replay (Node.afterReplay),
	// Start's own included.
	afterReplay func(*Node)
}

func newReplica(t testing.TB, addr string, ro replicaOpts) *replica {
	t.Helper()
	if ro.threshold == 0 {
		ro.threshold = 1000
	}
	if ro.probe == 0 {
		ro.probe = 50 * time.Millisecond
	}
	if ro.resync == 0 {
		ro.resync = 300 * time.Millisecond
	}
	r := &replica{logs: &tu.SyncBuffer{}, reg: prometheus.NewRegistry()}
	log := telemetry.NewLogger(r.logs, slog.LevelDebug)
	var err error
	r.n, err = New(Options{
		Redis: redisconn.Server{Addr: addr}, DDoSThreshold: ro.threshold, BlockDuration: time.Minute,
		ResyncEvery: ro.resync, ProbeEvery: ro.probe, FlushEvery: 20 * time.Millisecond,
		// Generous on a shared, race-instrumented machine: these tests are
		// about behaviour, the benchmark about cost.
		OpTimeout: 500 * time.Millisecond,
		Log:       log, Registerer: r.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.lists = iplist.NewLists(nil, ro.boot)
	r.lists.SetSync(r.n)
	r.guard, err = flood.New(flood.Config{Threshold: ro.threshold, BlockDuration: time.Minute, Share: r.n, Log: log, Registerer: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	r.n.Attach(r.lists, r.guard)
	r.n.hook = ro.hook
	if ro.afterReplay != nil {
		n := r.n
		n.afterReplay = func() { ro.afterReplay(n) }
	}
	r.n.Start(context.Background())
	t.Cleanup(func() {
		r.n.Close()
		if t.Failed() {
			t.Logf("replica log:\n%s", r.logs.String())
		}
	})
	return r
}

// eventually polls cond every 10 ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

var ctx = context.Background()

func TestSharedBucketAllowsWhatOneWould(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	rs := []*replica{newReplica(t, addr, replicaOpts{}), newReplica(t, addr, replicaOpts{}), newReplica(t, addr, replicaOpts{})}
	key := netip.MustParseAddr("203.0.113.7")
	const burst = 20
	interval := time.Hour // no refill during the test
	tests := []struct {
		name   string
		pick   func(i int) int // which replica serves request i
		client netip.Addr
	}{
		{name: "all on one", pick: func(int) int { return 0 }, client: key},
		{name: "round robin", pick: func(i int) int { return i % 3 }, client: netip.MustParseAddr("203.0.113.8")},
		{name: "skewed", pick: func(i int) int { return map[bool]int{true: 0, false: 1 + i%2}[i%10 < 8] }, client: netip.MustParseAddr("203.0.113.9")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			allowed, lastRemaining := 0, -1
			for i := range 3 * burst {
				d, ok := rs[tc.pick(i)].n.Allow(ctx, "", tc.client, interval, burst*interval)
				if !ok {
					t.Fatalf("request %d: shared store did not answer", i)
				}
				if d.Allowed {
					allowed++
					if lastRemaining >= 0 && d.Remaining != lastRemaining-1 {
						t.Errorf("request %d: remaining %d after %d", i, d.Remaining, lastRemaining)
					}
					lastRemaining = d.Remaining
				} else if d.RetryAfter <= 0 || d.RetryAfter > interval {
					t.Errorf("request %d refused with RetryAfter %v", i, d.RetryAfter)
				}
			}
			if allowed != burst {
				t.Fatalf("allowed %d of %d across replicas, want exactly the burst %d", allowed, 3*burst, burst)
			}
		})
	}
}

func TestSharedBucketRefillsAtTheRate(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	a, b := newReplica(t, addr, replicaOpts{}), newReplica(t, addr, replicaOpts{})
	key := netip.MustParseAddr("198.51.100.1")
	const burst, rps = 5, 50
	interval := time.Second / rps
	allowed := 0
	start := time.Now()
	for time.Since(start) < time.Second {
		for _, r := range []*replica{a, b} {
			if d, ok := r.n.Allow(ctx, "", key, interval, burst*interval); ok && d.Allowed {
				allowed++
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	want := float64(burst) + rps*elapsed.Seconds()
	if got := float64(allowed); got < want*0.95-1 || got > want*1.05+1 {
		t.Fatalf("allowed %d in %v at %d/s burst %d: want %.0f ±5%%", allowed, elapsed, rps, burst, want)
	}
}

func TestScopesAndKeysAreSeparateAndExpire(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	r := newReplica(t, addr, replicaOpts{})
	key := netip.MustParseAddr("2001:db8:1:2::")
	interval := 100 * time.Millisecond
	for _, scope := range []string{"", "/api/a", "/api/b"} {
		d, ok := r.n.Allow(ctx, scope, key, interval, interval)
		if !ok || !d.Allowed {
			t.Fatalf("scope %q: first request %+v ok=%v, want allowed (own bucket)", scope, d, ok)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ks, err := rdb.Keys(ctx, "portcullis:rl*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 3 {
		t.Fatalf("keys %v, want one per scope", ks)
	}
	for _, k := range ks {
		if !strings.Contains(k, "2001:db8:1:2::") {
			t.Errorf("key %q does not name the client key", k)
		}
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > interval+2*time.Millisecond {
			t.Errorf("key %q TTL %v, want (0, %v]: a bucket must expire once full", k, ttl, interval)
		}
	}
	eventually(t, 2*time.Second, "bucket keys expire", func() bool { return len(rdb.Keys(ctx, "portcullis:rl*").Val()) == 0 })
}

func TestListChangesReachEveryReplicaWithinASecond(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	a, b := newReplica(t, addr, replicaOpts{}), newReplica(t, addr, replicaOpts{})
	bad := netip.MustParsePrefix("192.0.2.0/24")
	ip := netip.MustParseAddr("192.0.2.55")
	if !a.lists.Add(iplist.Deny, bad) {
		t.Fatal("Add reported no change")
	}
	took := eventually(t, time.Second, "deny entry on the other replica", func() bool { return b.lists.Denied(ip) })
	t.Logf("deny entry propagated in %v", took)
	b.lists.Add(iplist.Allow, netip.MustParsePrefix("198.51.100.9/32"))
	eventually(t, time.Second, "allow entry back on the first replica", func() bool {
		return a.lists.Allowed(netip.MustParseAddr("198.51.100.9"))
	})
	b.lists.Remove(iplist.Deny, bad)
	eventually(t, time.Second, "removal on the first replica", func() bool { return !a.lists.Denied(ip) })

	// A replica started later gets the lists from Redis.
	c := newReplica(t, addr, replicaOpts{})
	if !c.lists.Allowed(netip.MustParseAddr("198.51.100.9")) || c.lists.Len(iplist.Deny) != 0 {
		t.Fatalf("new replica: allow %v deny %v", c.lists.Entries(iplist.Allow), c.lists.Entries(iplist.Deny))
	}
}

func TestBootListsAreSharedAndResyncConverges(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	a := newReplica(t, addr, replicaOpts{boot: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}})
	b := newReplica(t, addr, replicaOpts{})
	if !b.lists.Denied(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("a replica's IP_BLACKLIST did not reach a replica started after it")
	}
	// A change written to Redis whose message was lost: the resync brings it.
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	rdb.SAdd(ctx, "portcullis:list:blacklist", "192.0.2.99/32")
	rdb.Incr(ctx, "portcullis:lists:version")
	for _, r := range []*replica{a, b} {
		eventually(t, 2*time.Second, "resync picks up a missed change", func() bool {
			return r.lists.Denied(netip.MustParseAddr("192.0.2.99"))
		})
	}
}

func TestDDoSCountsAddUpAcrossReplicas(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	const threshold = 30
	a, b := newReplica(t, addr, replicaOpts{threshold: threshold}), newReplica(t, addr, replicaOpts{threshold: threshold})
	key := netip.MustParseAddr("203.0.113.50")
	// Each replica alone stays under the threshold; together they are over.
	for range 20 {
		a.n.Count(key)
		b.n.Count(key)
	}
	for _, r := range []*replica{a, b} {
		eventually(t, time.Second, "cluster-wide block on every replica", func() bool {
			bs := r.guard.Blocked(time.Now())
			return len(bs) == 1 && bs[0].IP == key && time.Until(bs[0].Until) > 50*time.Second
		})
	}
	// One block in the cluster counts once in blocked_ips_total, on the
	// replica whose counts completed it.
	if got := tu.MetricValue(t, a.reg, "blocked_ips_total") + tu.MetricValue(t, b.reg, "blocked_ips_total"); got != 1 {
		t.Fatalf("blocked_ips_total summed over replicas = %v, want 1", got)
	}
	// A replica started later learns the block from the resync.
	c := newReplica(t, addr, replicaOpts{threshold: threshold})
	if c.guard.BlockedCount() != 1 {
		t.Fatalf("new replica sees %d blocks, want 1", c.guard.BlockedCount())
	}
	// Lifting it on one replica lifts it everywhere and resets the count.
	if !b.guard.Unblock(key) {
		t.Fatal("Unblock found no block")
	}
	for _, r := range []*replica{a, c} {
		eventually(t, time.Second, "unblock on every replica", func() bool { return r.guard.BlockedCount() == 0 })
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	if ks := rdb.Keys(ctx, "portcullis:dd:*").Val(); len(ks) != 0 {
		t.Fatalf("counters left after unblock: %v", ks)
	}
	for _, k := range rdb.Keys(ctx, "portcullis:*").Val() {
		if k == "portcullis:lists:init" {
			continue
		}
		if ttl := rdb.PTTL(ctx, k).Val(); ttl < 0 && !strings.HasPrefix(k, "portcullis:list") {
			t.Errorf("key %q has no expiry", k)
		}
	}
}

func TestOutageFallsBackAndRecovers(t *testing.T) {
	t.Parallel()
	srv := testsvc.RestartableRedis(t)
	a, b := newReplica(t, srv.Addr, replicaOpts{}), newReplica(t, srv.Addr, replicaOpts{})
	a.lists.Add(iplist.Deny, netip.MustParsePrefix("192.0.2.10/32"))
	eventually(t, time.Second, "deny entry on b", func() bool { return b.lists.Denied(netip.MustParseAddr("192.0.2.10")) })
	// The first replica of a new cluster seeds Redis after one resync
	// period; from then on every replica holds the cluster's lists and may
	// seed a Redis that lost them.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	eventually(t, 2*time.Second, "lists marked as seeded", func() bool { return rdb.Exists(ctx, "portcullis:lists:init").Val() == 1 })
	time.Sleep(2 * 300 * time.Millisecond) // every replica resynced since

	srv.Stop()
	key := netip.MustParseAddr("203.0.113.1")
	start := time.Now()
	if _, ok := a.n.Allow(ctx, "", key, time.Second, time.Second); ok {
		t.Fatal("Allow answered with Redis down")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("first call after the outage took %v", took)
	}
	if !a.n.Degraded() {
		t.Fatal("not degraded after a failed call")
	}
	// Once degraded, the request path does not wait on Redis at all.
	start = time.Now()
	for range 1000 {
		if _, ok := a.n.Allow(ctx, "", key, time.Second, time.Second); ok {
			t.Fatal("Allow answered with Redis down")
		}
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("1000 calls while degraded took %v: the breaker is not open", took)
	}
	if got := value(a.n.fallbacks); got < 1001 {
		t.Fatalf("cluster_fallback_total = %v, want ≥ 1001", got)
	}
	eventually(t, 2*time.Second, "b notices the outage", b.n.Degraded)
	// A change made during the outage applies locally at once and reaches
	// the others after recovery.
	b.lists.Add(iplist.Allow, netip.MustParsePrefix("198.51.100.0/24"))
	if !b.lists.Allowed(netip.MustParseAddr("198.51.100.3")) {
		t.Fatal("change during the outage not applied locally")
	}
	if n := strings.Count(a.logs.String(), "redis unavailable"); n != 1 {
		t.Fatalf("%d outage warnings, want exactly 1", n)
	}
	if got := value(a.n.degradedG); got != 1 {
		t.Fatalf("cluster_degraded = %v during the outage", got)
	}

	srv.Start() // empty: no persistence
	for _, r := range []*replica{a, b} {
		eventually(t, 2*time.Second, "recovery", func() bool { return !r.n.Degraded() })
	}
	eventually(t, time.Second, "change made during the outage reaches a", func() bool {
		return a.lists.Allowed(netip.MustParseAddr("198.51.100.3"))
	})
	// Redis came back empty; the replicas seeded it again, so the deny
	// entry survives the restart of Redis and a new replica gets both.
	c := newReplica(t, srv.Addr, replicaOpts{})
	if !c.lists.Denied(netip.MustParseAddr("192.0.2.10")) || !c.lists.Allowed(netip.MustParseAddr("198.51.100.3")) {
		t.Fatalf("new replica after Redis restart: allow %v deny %v", c.lists.Entries(iplist.Allow), c.lists.Entries(iplist.Deny))
	}
	if d, ok := a.n.Allow(ctx, "", key, time.Second, time.Second); !ok || !d.Allowed {
		t.Fatalf("after recovery: %+v ok=%v", d, ok)
	}
	if n := a.logs.CountMsg("redis reachable again: back to shared limits and lists"); n != 1 {
		t.Fatalf("%d recovery log lines, want exactly 1", n)
	}
	if got := value(a.n.degradedG); got != 0 {
		t.Fatalf("cluster_degraded = %v after recovery", got)
	}
}

func TestBootWithoutRedisStartsDegraded(t *testing.T) {
	t.Parallel()
	srv := testsvc.RestartableRedis(t)
	srv.Stop()
	r := newReplica(t, srv.Addr, replicaOpts{boot: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}})
	if !r.n.Degraded() {
		t.Fatal("not degraded with Redis down at boot")
	}
	srv.Start()
	eventually(t, 2*time.Second, "recovery", func() bool { return !r.n.Degraded() })
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	if !rdb.SIsMember(ctx, "portcullis:list:blacklist", "192.0.2.7/32").Val() {
		t.Fatal("boot deny list not pushed after recovery")
	}
}

func TestConcurrentCountsAreNotLost(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	const threshold = 400
	r := newReplica(t, addr, replicaOpts{threshold: threshold})
	key := netip.MustParseAddr("203.0.113.77")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range threshold / 4 {
				r.n.Count(key)
			}
		})
	}
	wg.Wait()
	// Exactly at the threshold: not over it.
	time.Sleep(100 * time.Millisecond)
	if r.guard.BlockedCount() != 0 {
		t.Fatal("blocked at exactly the threshold")
	}
	r.n.Count(key)
	eventually(t, time.Second, "block one request over the threshold", func() bool { return r.guard.BlockedCount() == 1 })
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// Regression: an admin change made while a recovery was replaying the
// outage's changes was queued after the queue had been drained, then the
// replica went back to shared state: the change never reached Redis and
// the next resync took it off this replica's own list.
func TestChangeRacingRecoveryIsNotLost(t *testing.T) {
	t.Parallel()
	srv := testsvc.RestartableRedis(t)
	srv.Stop()
	r := newReplica(t, srv.Addr, replicaOpts{})
	if !r.n.Degraded() {
		t.Fatal("not degraded with Redis down at boot")
	}
	late := netip.MustParsePrefix("192.0.2.66/32")
	var once sync.Once
	r.n.afterReplay = func() { once.Do(func() { r.lists.Add(iplist.Deny, late) }) }
	srv.Start()
	eventually(t, 2*time.Second, "recovery", func() bool { return !r.n.Degraded() })
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	eventually(t, 2*time.Second, "change made during the recovery reaches Redis", func() bool {
		return rdb.SIsMember(ctx, "portcullis:list:blacklist", late.String()).Val()
	})
	time.Sleep(700 * time.Millisecond) // two resyncs
	if !r.lists.Denied(late.Addr()) {
		t.Fatal("a resync took the change off the replica that made it")
	}
}

// Regression: Redis restarted empty (no persistence) together with one
// replica, as when a node dies: the fresh replica, holding only its boot
// entries, reached Redis first and seeded it, so the replicas that held
// the cluster's lists then replaced theirs with its boot entries and every
// admin change was lost.
func TestFreshReplicaDoesNotSeedOverTheListsOthersHold(t *testing.T) {
	t.Parallel()
	srv := testsvc.RestartableRedis(t)
	old := newReplica(t, srv.Addr, replicaOpts{probe: 400 * time.Millisecond})
	added := netip.MustParsePrefix("192.0.2.80/32")
	old.lists.Add(iplist.Deny, added)

	srv.Stop()
	eventually(t, 2*time.Second, "outage noticed", old.n.Degraded)
	boot := netip.MustParsePrefix("192.0.2.81/32")
	fresh := newReplica(t, srv.Addr, replicaOpts{boot: []netip.Prefix{boot}, probe: 10 * time.Millisecond, resync: 2 * time.Second})
	srv.Start() // empty
	for _, r := range []*replica{old, fresh} {
		eventually(t, 3*time.Second, "recovery", func() bool { return !r.n.Degraded() })
	}
	for _, r := range []*replica{old, fresh} {
		eventually(t, 3*time.Second, "both replicas hold the admin entry and the boot entry", func() bool {
			return r.lists.Denied(added.Addr()) && r.lists.Denied(boot.Addr())
		})
	}
}

// Regression: a network cut without a reset (a node lost, Redis moved to
// another address, a NAT entry dropped) left the subscription reading a
// socket that never answers nor fails: list changes and blocks then came
// only with the periodic resync, or, with no traffic to trip the breaker,
// not at all, instead of within a second.
func TestSilentlyDeadSubscriptionIsReplaced(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cut       func(*blackhole)
		healAfter bool // the cut lasts until Heal (a lost node that comes back)
	}{
		{name: "existing connections dropped", cut: (*blackhole).CutExisting},
		{name: "everything dropped, then healed", cut: (*blackhole).CutAll, healAfter: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, _ := testsvc.Redis(t)
			hole := newBlackhole(t, addr)
			// The resync is out of the picture: only the subscription can
			// bring a change within the test.
			a := newReplica(t, hole.Addr, replicaOpts{resync: time.Hour})
			b := newReplica(t, addr, replicaOpts{resync: time.Hour})
			first := netip.MustParsePrefix("192.0.2.1/32")
			b.lists.Add(iplist.Deny, first)
			eventually(t, time.Second, "change before the cut", func() bool { return a.lists.Denied(first.Addr()) })
			subscribed := hole.subscribes.Load()

			tc.cut(hole)
			cut := time.Now()
			late := netip.MustParsePrefix("192.0.2.2/32")
			b.lists.Add(iplist.Deny, late)
			took := eventually(t, 5*time.Second, "dead subscription noticed", func() bool {
				return a.logs.CountMsg("redis subscription silent: resubscribing on a new connection") == 1
			})
			t.Logf("dead subscription noticed %v after the cut", took)
			if tc.healAfter {
				if a.lists.Denied(late.Addr()) {
					t.Fatal("change arrived through a cut network")
				}
				hole.Heal()
			}
			took = eventually(t, 8*time.Second, "change made during the cut reaches the replica", func() bool {
				return a.lists.Denied(late.Addr())
			})
			t.Logf("change arrived %v later (%v after the cut)", took, time.Since(cut).Round(time.Millisecond))
			if hole.subscribes.Load() <= subscribed {
				t.Fatal("no new subscription reached Redis")
			}
			// And the new subscription carries changes as they happen.
			again := netip.MustParsePrefix("192.0.2.3/32")
			b.lists.Add(iplist.Deny, again)
			eventually(t, 2*time.Second, "change after the new subscription", func() bool { return a.lists.Denied(again.Addr()) })
		})
	}
}

// Regression: a panic in a background loop (the subscription reader, the
// flush/resync/probe loop) killed the whole process.
func TestPanicInBackgroundLoopIsRecoveredAndLoopRestarted(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	const threshold = 20
	var turns sync.Map // loop name → *atomic.Int32
	hook := func(loop string) {
		v, _ := turns.LoadOrStore(loop, new(atomic.Int32))
		if v.(*atomic.Int32).Add(1) == 3 {
			panic("injected panic in " + loop)
		}
	}
	a := newReplica(t, addr, replicaOpts{threshold: threshold, hook: hook})
	b := newReplica(t, addr, replicaOpts{threshold: threshold})
	// The receive loop turns once per message or quiet second; send three.
	for i := range 3 {
		b.lists.Add(iplist.Deny, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), 32))
	}
	eventually(t, 5*time.Second, "both loops panicked and were logged", func() bool {
		return a.logs.CountMsg("cluster background loop panicked: restarting it") == 2
	})
	for _, line := range strings.Split(strings.TrimSpace(a.logs.String()), "\n") {
		if !strings.Contains(line, "panicked") {
			continue
		}
		for _, want := range []string{`"level":"ERROR"`, `"component":"cluster"`, `"panic":"injected panic in `, `"stack":"goroutine `} {
			if !strings.Contains(line, want) {
				t.Errorf("panic log line lacks %s: %s", want, line)
			}
		}
	}
	// The restarted receive loop still brings changes.
	p := netip.MustParsePrefix("192.0.2.99/32")
	b.lists.Add(iplist.Deny, p)
	eventually(t, 2*time.Second, "change after the restart", func() bool { return a.lists.Denied(p.Addr()) })
	// The restarted flush loop still shares DDoS counts.
	key := netip.MustParseAddr("203.0.113.9")
	for range threshold + 1 {
		a.n.Count(key)
	}
	eventually(t, 2*time.Second, "block after the restart", func() bool { return b.guard.BlockedCount() == 1 })
}

// Regression: an admin change that raced the shutdown (after Close) failed
// on the closed client and logged a spurious "redis unavailable" warning.
func TestChangeAfterCloseIsQuiet(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	r := newReplica(t, addr, replicaOpts{})
	r.n.Close()
	p := netip.MustParsePrefix("192.0.2.5/32")
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.lists.Add(iplist.Deny, p)
		r.guard.Unblock(netip.MustParseAddr("192.0.2.6"))
		r.n.Unblocked(netip.MustParseAddr("192.0.2.6"))
		r.n.Allow(ctx, "", p.Addr(), time.Second, time.Second)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a change after Close did not return")
	}
	if !r.lists.Denied(p.Addr()) {
		t.Error("change after Close not applied locally")
	}
	if strings.Contains(r.logs.String(), "redis unavailable") || r.n.Degraded() {
		t.Fatalf("change after Close reported an outage:\n%s", r.logs.String())
	}
	if !strings.Contains(r.logs.String(), "change after close not shared") {
		t.Error("no debug line for the change dropped after Close")
	}
}

// Design choice (docs/cluster.md): a change made on a
// replica cut off from Redis is replayed when it reconnects, over the
// changes the connected replicas made meanwhile, even later ones.
func TestOutageChangeIsReplayedOverALaterConnectedOne(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	hole := newBlackhole(t, addr)
	a := newReplica(t, hole.Addr, replicaOpts{})
	b := newReplica(t, addr, replicaOpts{})
	x := netip.MustParsePrefix("192.0.2.1/32")
	b.lists.Add(iplist.Deny, x)
	eventually(t, time.Second, "entry on a", func() bool { return a.lists.Denied(x.Addr()) })

	hole.CutAll()
	a.lists.Remove(iplist.Deny, x) // fails to reach Redis: queued
	if !a.n.Degraded() {
		t.Fatal("a not degraded after a change it could not share")
	}
	b.lists.Remove(iplist.Deny, x)
	b.lists.Add(iplist.Deny, x) // later than a's removal, and opposite
	hole.Heal()
	eventually(t, 10*time.Second, "a recovers", func() bool { return !a.n.Degraded() })
	for _, r := range []*replica{a, b} {
		eventually(t, 2*time.Second, "the replayed removal wins everywhere", func() bool { return !r.lists.Denied(x.Addr()) })
	}
}

// A failure elsewhere while Start's own recovery is under way (an admin
// change racing the boot) opens the breaker; the recovery that then
// completes closes it again, as a probe's would, instead of leaving the
// replica degraded until the next probe.
func TestFailureDuringStartRecoveryIsEndedByIt(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	var once sync.Once
	afterReplay := func(n *Node) {
		once.Do(func() {
			n.fail(errors.New("injected failure during the boot"))
			if !n.Degraded() {
				t.Error("the injected failure did not open the breaker")
			}
		})
	}
	r := newReplica(t, addr, replicaOpts{probe: time.Hour, afterReplay: afterReplay})
	if r.n.Degraded() {
		t.Fatal("still degraded after Start's recovery succeeded")
	}
	if r.logs.CountMsg("redis reachable again: back to shared limits and lists") != 1 {
		t.Fatalf("want one recovery line:\n%s", r.logs.String())
	}
}
