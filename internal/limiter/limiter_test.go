package limiter

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/testutil"
)

func newLimits(t testing.TB, clock *testutil.Clock, reg prometheus.Registerer) *Limits {
	t.Helper()
	s, err := NewLimits(Config{MaxTrackedIPs: 4096, Now: clock.Now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAllowIsATokenBucket(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	l, err := newLimits(t, clock, nil).New(2, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	key := netip.MustParseAddr("198.51.100.7")
	for i, want := range []bool{true, true, true, false} {
		if d := l.Allow(key, clock.Now()); d.Allowed != want || d.Limit != 3 {
			t.Fatalf("request %d: %+v, want allowed=%v", i, d, want)
		}
	}
	clock.Advance(500 * time.Millisecond) // one token at 2/s
	if d := l.Allow(key, clock.Now()); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after one refill: %+v", d)
	}
	if d := l.Allow(netip.MustParseAddr("198.51.100.8"), clock.Now()); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("another client has its own bucket: %+v", d)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := NewLimits(Config{MaxTrackedIPs: -1}); err == nil {
		t.Fatal("negative MaxTrackedIPs accepted")
	}
	for _, c := range []struct {
		rps   float64
		burst int
	}{{0, 1}, {-1, 1}, {1, 0}, {1e-9, 1<<31 - 1}} {
		if Check(c.rps, c.burst) == nil {
			t.Errorf("Check(%v, %d) accepted", c.rps, c.burst)
		}
	}
}

func TestSweepDropsRefilledBuckets(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	reg := prometheus.NewRegistry()
	s := newLimits(t, clock, reg)
	l, err := s.New(100, 200, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		l.Allow(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), clock.Now())
	}
	if l.Len() != 50 || s.Tracked() != 50 {
		t.Fatalf("Len()=%d Tracked()=%d, want 50", l.Len(), s.Tracked())
	}
	if got := testutil.MetricValue(t, reg, "tracked_ips"); got != 50 {
		t.Fatalf("tracked_ips=%v, want 50", got)
	}
	clock.Advance(minIdleTTL - time.Second)
	s.Sweep(clock.Now())
	if l.Len() != 50 {
		t.Fatalf("swept before the idle TTL: %d left", l.Len())
	}
	clock.Advance(time.Second)
	s.Sweep(clock.Now())
	if l.Len() != 0 {
		t.Fatalf("%d buckets left after the idle TTL", l.Len())
	}
}

// TestReplacedRouteLimitsAreForgotten: a route's limit dropped with its
// chain (a reload replaced the route) leaves the set once collected.
func TestReplacedRouteLimitsAreForgotten(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	s := newLimits(t, clock, nil)
	keep, err := s.New(1, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		for range 10 {
			l, err := s.New(1, 1, true)
			if err != nil {
				t.Fatal(err)
			}
			l.Allow(netip.MustParseAddr("198.51.100.1"), clock.Now())
		}
	}()
	keep.Allow(netip.MustParseAddr("198.51.100.1"), clock.Now())
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		if n := len(s.limiters()); n == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d live limits, want 1 after the route limits were dropped", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.Tracked() != 1 {
		t.Fatalf("Tracked()=%d, want 1", s.Tracked())
	}
	runtime.KeepAlive(keep)
}

func BenchmarkAllowExistingClient(b *testing.B) {
	s, err := NewLimits(Config{MaxTrackedIPs: 4096})
	if err != nil {
		b.Fatal(err)
	}
	l, err := s.New(1e9, 1<<20, false)
	if err != nil {
		b.Fatal(err)
	}
	key := netip.MustParseAddr("198.51.100.7")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(key, now)
	}
}
