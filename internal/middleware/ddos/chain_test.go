package ddos_test

import (
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/flood"
	"github.com/portcullis/portcullis/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/limiter"
	"github.com/portcullis/portcullis/internal/middleware/clientip"
	"github.com/portcullis/portcullis/internal/middleware/ddos"
	"github.com/portcullis/portcullis/internal/middleware/ratelimit"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
)

// edge is the DDoS guard and the per-IP limiter in the order of the request path,
// behind the envelope middleware/order.go builds (request.New as its begin
// step, then clientip.New).
type edge struct {
	h     http.Handler
	steps http.Handler // the guard and the limiter, without the envelope
	guard *flood.Guard
	rl    *limiter.Limits
}

func newEdge(tb testing.TB, now func() time.Time, maxTracked, threshold int, rps float64, burst int) *edge {
	tb.Helper()
	reg := prometheus.NewRegistry()
	shared, err := limiter.NewLimits(limiter.Config{MaxTrackedIPs: maxTracked, Registerer: reg, Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	limit, err := ratelimit.New(rps, burst, shared)
	if err != nil {
		tb.Fatal(err)
	}
	rl := limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	guard, err := flood.New(flood.Config{
		Threshold: threshold, BlockDuration: 10 * time.Minute, MaxTrackedIPs: maxTracked,
		Registerer: reg, Now: now,
	})
	if err != nil {
		tb.Fatal(err)
	}
	steps := ddos.New(guard)(rl)
	inner := clientip.New(realip.NewResolver([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}))(steps)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		inner.ServeHTTP(in.Writer(), r)
	})
	return &edge{h: h, steps: steps, guard: guard, rl: shared}
}

// discard is a ResponseWriter that keeps only the status and the header
// map (cleared per request, so its buckets are reused).
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }

func (e *edge) send(remote netip.Addr) int {
	r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
	r.RemoteAddr = netip.AddrPortFrom(remote, 5555).String()
	w := &discard{h: http.Header{}}
	e.h.ServeHTTP(w, r)
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

func sprayAddr(i int) netip.Addr {
	if i%4 == 3 { // a quarter IPv6, each in its own /64
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], 0x2001_0db8_0000_0000+uint64(i))
		b[15] = 1
		return netip.AddrFrom16(b)
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 0x0b00_0000+uint32(i)) // 11.0.0.0 + i
	return netip.AddrFrom4(b)
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSprayThroughChain: 300k distinct client addresses
// through the real chain keep per-IP state at the cap and the heap under a
// bound computed from the entry size, and offenders are still refused.
func TestSprayThroughChain(t *testing.T) {
	const (
		maxTracked = 65536
		spray      = 300000
		threshold  = 1000
		burst      = 200
	)
	clk := testutil.NewClock(time.Date(2026, 5, 6, 7, 0, 0, 0, time.UTC))
	e := newEdge(t, clk.Now, maxTracked, threshold, 100, burst)

	blocked := netip.MustParseAddr("203.0.113.66") // over DDOS_THRESHOLD
	limited := netip.MustParseAddr("203.0.113.77") // over its bucket, and keeps trying
	for range threshold + 1 {
		e.send(blocked)
	}
	if code := e.send(blocked); code != http.StatusTooManyRequests || e.guard.BlockedCount() != 1 {
		t.Fatalf("offender not blocked before the spray: %d", code)
	}
	for range burst {
		e.send(limited)
	}
	if code := e.send(limited); code != http.StatusTooManyRequests {
		t.Fatalf("limited client not limited before the spray: %d", code)
	}

	before := heapAlloc()
	passed := 0
	for i := range spray {
		if e.send(sprayAddr(i)) == http.StatusOK {
			passed++
		}
		if i%1000 == 0 {
			// The limited client keeps trying during the spray (the clock
			// is frozen, so its bucket does not refill).
			if code := e.send(limited); code != http.StatusTooManyRequests {
				t.Fatalf("limited client passed during the spray (request %d): %d", i, code)
			}
		}
		if i%10000 == 0 && (e.guard.Tracked() > maxTracked || e.rl.Tracked() > maxTracked) {
			t.Fatalf("after %d addresses: %d counters, %d buckets; cap %d", i, e.guard.Tracked(), e.rl.Tracked(), maxTracked)
		}
	}
	after := heapAlloc()

	if passed != spray {
		t.Fatalf("%d of %d first requests passed", passed, spray)
	}
	if e.guard.Tracked() != maxTracked || e.rl.Tracked() != maxTracked {
		t.Fatalf("after the spray: %d counters, %d buckets, want the cap %d", e.guard.Tracked(), e.rl.Tracked(), maxTracked)
	}
	if ev := e.rl.Evictions(); ev < spray-maxTracked {
		t.Fatalf("%d bucket evictions, want at least %d", ev, spray-maxTracked)
	}
	// Bound: a full table costs at most about 40-48 B per node, ~40 B per
	// index slot at the map's lowest load, and up to 2x node slack while a
	// shard's slice grows: 256 B per entry leaves room for all of it. Two
	// tables (counters, buckets) at the cap: 2 × 65536 × 256 B = 32 MiB.
	const bound = 2 * maxTracked * 256
	growth := int64(after) - int64(before)
	t.Logf("heap growth %d KiB for %d addresses (%d B per tracked entry); bound %d KiB",
		growth>>10, spray, growth/(2*maxTracked), bound>>10)
	if growth > bound {
		t.Fatalf("heap grew by %d bytes, over the bound %d", growth, bound)
	}

	// The offenders are still refused: the block survived the churn, and
	// the limited client's bucket stayed in use.
	if code := e.send(blocked); code != http.StatusTooManyRequests {
		t.Fatalf("blocked offender passed after the spray: %d", code)
	}
	if code := e.send(limited); code != http.StatusTooManyRequests {
		t.Fatalf("limited client passed after the spray: %d", code)
	}
	// And the limiter still limits a new client at full tables.
	fresh := netip.MustParseAddr("198.51.100.1")
	for i := range burst {
		if code := e.send(fresh); code != http.StatusOK {
			t.Fatalf("fresh client refused at request %d: %d", i+1, code)
		}
	}
	if code := e.send(fresh); code != http.StatusTooManyRequests {
		t.Fatalf("fresh client not limited at full tables: %d", code)
	}
	runtime.KeepAlive(e)
}

// BenchmarkChainAllowedClient measures the DDoS guard and the per-IP limiter
// together for a known client that is allowed (DDoS guard, then rate limit), with
// request.Info set up as the envelope leaves it.
func BenchmarkChainAllowedClient(b *testing.B) {
	e := newEdge(b, nil, 262144, 1<<30, 1e9, 200) // nil clock: the request's arrival time
	// Other clients in the tables, as in production.
	for i := range 10000 {
		e.send(sprayAddr(i))
	}
	h := e.steps
	w := &discard{h: http.Header{}}
	r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
	in, r := request.New(w, r, time.Now(), 0)
	in.ClientIP = netip.MustParseAddr("198.51.100.7")
	in.ClientIPText = in.ClientIP.String()
	in.PeerIP = in.ClientIP
	h.ServeHTTP(w, r)
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		// The envelope reads the clock once per request (request.New);
		// the steps use that reading.
		in.Start = in.Start.Add(time.Microsecond)
		h.ServeHTTP(w, r)
	}
	if w.code != 0 && w.code != http.StatusOK {
		b.Fatalf("client refused: %d", w.code)
	}
}

// BenchmarkChainAllowedClientParallel is the same with many clients on all
// cores, so the shards' locks meet.
func BenchmarkChainAllowedClientParallel(b *testing.B) {
	e := newEdge(b, nil, 262144, 1<<30, 1e9, 200) // nil clock: the request's arrival time
	var next sync.Mutex
	n := 0
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		base := n
		n += 1024
		next.Unlock()
		w := &discard{h: http.Header{}}
		r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
		in, r := request.New(w, r, time.Now(), 0)
		i := 0
		for pb.Next() {
			in.ClientIP = sprayAddr(base + i&1023)
			in.Start = in.Start.Add(time.Microsecond)
			i++
			clear(w.h)
			e.steps.ServeHTTP(w, r)
		}
	})
}
