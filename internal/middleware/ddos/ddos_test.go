package ddos

import (
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/flood"
	"github.com/portcullis/portcullis/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/middleware/clientip"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
)

var start = time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC)

var resolver = realip.NewResolver([]netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")})

type fixture struct {
	clock *testutil.Clock
	reg   *prometheus.Registry
	logs  *testutil.SyncBuffer
	guard *flood.Guard
	step  http.Handler
	h     http.Handler
}

// newFixture builds the chain as middleware/order.go does (request.New,
// clientip.New, then the guard); clients in allow are marked allow-listed
// as the ipfilter step would.
func newFixture(t testing.TB, c flood.Config, allow ...string) *fixture {
	t.Helper()
	f := &fixture{clock: testutil.NewClock(start), reg: prometheus.NewRegistry(), logs: &testutil.SyncBuffer{}}
	c.Now, c.Registerer = f.clock.Now, f.reg
	c.Log = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	f.guard, err = flood.New(c)
	if err != nil {
		t.Fatal(err)
	}
	f.step = New(f.guard)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	allowed := map[netip.Addr]bool{}
	for _, a := range allow {
		allowed[netip.MustParseAddr(a)] = true
	}
	inner := clientip.New(resolver)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := request.From(r.Context())
		in.Allowlisted = allowed[in.ClientIP]
		f.step.ServeHTTP(w, r)
	}))
	f.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		inner.ServeHTTP(in.Writer(), r)
	})
	return f
}

func (f *fixture) send(remote string, xff ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(remote), 1234).String()
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// sendN sends n requests and returns how many passed.
func (f *fixture) sendN(n int, remote string, xff ...string) int {
	passed := 0
	for range n {
		if f.send(remote, xff...).Code == http.StatusOK {
			passed++
		}
	}
	return passed
}

func (f *fixture) metric(t testing.TB, name string) float64 {
	t.Helper()
	return testutil.MetricValue(t, f.reg, name)
}

func TestThresholdBlocksAndBlockExpires(t *testing.T) {
	f := newFixture(t, flood.Config{Threshold: 10, BlockDuration: 10 * time.Minute})
	const ip = "198.51.100.7"
	if n := f.sendN(10, ip); n != 10 {
		t.Fatalf("%d of the first 10 requests passed", n)
	}
	w := f.send(ip)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "600" {
		t.Fatalf("11th request: %d Retry-After=%q, want 429 and 600", w.Code, w.Header().Get("Retry-After"))
	}
	var body struct{ Error, RequestID string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
		t.Fatalf("429 body %q is not the gateway's JSON error", w.Body.String())
	}
	if got := f.metric(t, "blocked_ips_total"); got != 1 {
		t.Fatalf("blocked_ips_total=%v, want 1", got)
	}
	logs := f.logs.String()
	for _, s := range []string{`"level":"WARN"`, `"msg":"ip blocked"`, `"component":"ddos"`, `"client_ip":"198.51.100.7"`, `"count":11`, `"until":"2026-03-04T05:10:00Z"`} {
		if !strings.Contains(logs, s) {
			t.Fatalf("block log lacks %s:\n%s", s, logs)
		}
	}

	f.clock.Advance(5*time.Minute + 500*time.Millisecond)
	for range 100 {
		w = f.send(ip)
	}
	if w.Code != 429 || w.Header().Get("Retry-After") != "300" {
		t.Fatalf("half-way: %d Retry-After=%q, want 429 and 300 (rounded up)", w.Code, w.Header().Get("Retry-After"))
	}
	if got := f.metric(t, "blocked_ips_total"); got != 1 {
		t.Fatalf("blocked_ips_total=%v after refused requests, want 1 (per block)", got)
	}
	if got := f.metric(t, "blocked_ips"); got != 1 {
		t.Fatalf("blocked_ips=%v, want 1", got)
	}
	if n := f.logs.CountMsg("ip blocked"); n != 1 {
		t.Fatalf("%d block log lines, want 1", n)
	}

	f.clock.Advance(5*time.Minute - 500*time.Millisecond)
	// The counter starts from zero: the refused requests did not count.
	if n := f.sendN(10, ip); n != 10 {
		t.Fatalf("%d of 10 requests passed after the block ended", n)
	}
	if w := f.send(ip); w.Code != 429 {
		t.Fatalf("threshold+1 after the block: %d", w.Code)
	}
	if got := f.metric(t, "blocked_ips_total"); got != 2 {
		t.Fatalf("blocked_ips_total=%v, want 2", got)
	}
}

func TestSlidingMinute(t *testing.T) {
	type burst struct {
		at   time.Duration // since the guard's start
		n    int
		pass int
	}
	tests := []struct {
		name   string
		bursts []burst
	}{
		{name: "the previous minute counts by overlap", bursts: []burst{
			{at: 30 * time.Second, n: 8, pass: 8},
			// 15s into the next minute, 3/4 of the previous one is still in
			// the last 60s: 6 + 4 = 10 pass, the 5th is the 11th.
			{at: 75 * time.Second, n: 5, pass: 4},
		}},
		{name: "a fixed window would have let 10 more through", bursts: []burst{
			{at: 59 * time.Second, n: 10, pass: 10},
			{at: 60 * time.Second, n: 10, pass: 0},
		}},
		{name: "half a minute later half counts", bursts: []burst{
			{at: 50 * time.Second, n: 10, pass: 10},
			{at: 90 * time.Second, n: 6, pass: 5},
		}},
		{name: "requests two minutes ago do not count", bursts: []burst{
			{at: 10 * time.Second, n: 10, pass: 10},
			{at: 121 * time.Second, n: 11, pass: 10},
		}},
		{name: "a steady rate under the threshold is never blocked", bursts: func() []burst {
			var b []burst
			for i := range 45 { // 9 a minute, evenly spread, for 5 minutes
				b = append(b, burst{at: time.Duration(i) * time.Minute / 9, n: 1, pass: 1})
			}
			return b
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, flood.Config{Threshold: 10, BlockDuration: time.Hour})
			at := time.Duration(0)
			for i, b := range tc.bursts {
				f.clock.Advance(b.at - at)
				at = b.at
				if got := f.sendN(b.n, "203.0.113.9"); got != b.pass {
					t.Fatalf("burst %d at %v: %d of %d passed, want %d", i, b.at, got, b.n, b.pass)
				}
			}
		})
	}
}

func TestWhoIsCountedAndBlocked(t *testing.T) {
	tests := []struct {
		name    string
		allow   []string
		first   []string // remote then XFF: sends threshold+1
		second  []string // then one request from here
		blocked bool     // is the second refused
		warn    bool     // trusted-proxy warning logged
	}{
		{name: "IPv6 blocked per /64", first: []string{"2001:db8:1:2::1"}, second: []string{"2001:db8:1:2::ffff"}, blocked: true},
		{name: "another /64 is not", first: []string{"2001:db8:1:2::1"}, second: []string{"2001:db8:1:3::1"}},
		{name: "spoofed X-Forwarded-For does not escape", first: []string{"203.0.113.5", "1.1.1.1"}, second: []string{"203.0.113.5", "2.2.2.2"}, blocked: true},
		{name: "clients behind a trusted proxy told apart", first: []string{"10.9.0.1", "198.51.100.1"}, second: []string{"10.9.0.1", "198.51.100.2"}},
		{name: "client behind a trusted proxy is blocked, not the proxy", first: []string{"10.9.0.1", "198.51.100.1"}, second: []string{"10.9.0.2", "198.51.100.1"}, blocked: true},
		{name: "trusted proxy that is the client is never blocked", first: []string{"10.9.0.1"}, second: []string{"10.9.0.1"}, warn: true},
		{name: "allow-listed client is never blocked", allow: []string{"198.51.100.77"}, first: []string{"198.51.100.77"}, second: []string{"198.51.100.77"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, flood.Config{Threshold: 5, BlockDuration: time.Minute}, tc.allow...)
			f.sendN(6, tc.first[0], tc.first[1:]...)
			w := f.send(tc.second[0], tc.second[1:]...)
			if got := w.Code == 429; got != tc.blocked {
				t.Fatalf("second client refused=%v, want %v", got, tc.blocked)
			}
			if got := f.logs.CountMsg("trusted proxy is the client; it is rate-limited as one client but never DDoS-blocked"); (got == 1) != tc.warn || got > 1 {
				t.Fatalf("%d trusted-proxy warnings for 7 requests, want warn=%v (once a minute)", got, tc.warn)
			}
		})
	}
}

func TestUnblockAndList(t *testing.T) {
	f := newFixture(t, flood.Config{Threshold: 3, BlockDuration: 10 * time.Minute})
	f.sendN(4, "198.51.100.20")
	f.clock.Advance(time.Minute)
	f.sendN(4, "2001:db8:7:7::1")
	f.sendN(4, "198.51.100.3")
	now := f.clock.Now()
	want := []flood.Block{
		{IP: netip.MustParseAddr("198.51.100.3"), Until: now.Add(10 * time.Minute)},
		{IP: netip.MustParseAddr("198.51.100.20"), Until: start.Add(10 * time.Minute)},
		{IP: netip.MustParseAddr("2001:db8:7:7::"), Until: now.Add(10 * time.Minute)},
	}
	got := f.guard.Blocked(now)
	if len(got) != len(want) {
		t.Fatalf("Blocked()=%v, want %v", got, want)
	}
	for i := range want {
		if got[i].IP != want[i].IP || !got[i].Until.Equal(want[i].Until) {
			t.Fatalf("Blocked()[%d]=%v, want %v", i, got[i], want[i])
		}
	}
	if p := got[2].Prefix().String(); p != "2001:db8:7:7::/64" {
		t.Fatalf("IPv6 block prefix %s", p)
	}
	if f.guard.BlockedCount() != 3 {
		t.Fatalf("BlockedCount()=%d, want 3", f.guard.BlockedCount())
	}

	tests := []struct {
		name   string
		ip     string
		lifted bool
		client string // then passes
	}{
		{name: "IPv6 by any address of its /64", ip: "2001:db8:7:7:abcd::1", lifted: true, client: "2001:db8:7:7::1"},
		{name: "IPv4-mapped form", ip: "::ffff:198.51.100.3", lifted: true, client: "198.51.100.3"},
		{name: "not blocked", ip: "192.0.2.1"},
		{name: "already lifted", ip: "198.51.100.3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.guard.Unblock(netip.MustParseAddr(tc.ip)); got != tc.lifted {
				t.Fatalf("Unblock(%s)=%v, want %v", tc.ip, got, tc.lifted)
			}
			if tc.client != "" {
				// Its counter was reset too: the threshold passes again.
				if n := f.sendN(3, tc.client); n != 3 {
					t.Fatalf("%d of 3 passed after unblocking", n)
				}
			}
		})
	}
	if f.guard.BlockedCount() != 1 {
		t.Fatalf("BlockedCount()=%d after two unblocks, want 1", f.guard.BlockedCount())
	}
	// The first block ends a minute before the others; expired blocks are
	// not listed, even before a sweep removes them.
	f.clock.Advance(9 * time.Minute)
	if got := f.guard.Blocked(f.clock.Now()); len(got) != 0 || f.guard.BlockedCount() != 0 {
		t.Fatalf("expired blocks listed: %v", got)
	}
	if f.guard.Unblock(netip.MustParseAddr("198.51.100.20")) {
		t.Fatal("Unblock of an expired block reported a lift")
	}
}

func TestSweepRemovesIdleCountersAndExpiredBlocks(t *testing.T) {
	f := newFixture(t, flood.Config{Threshold: 3, BlockDuration: 5 * time.Minute})
	for i := range 100 {
		f.send(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String())
	}
	f.sendN(4, "203.0.113.1")
	if f.guard.Tracked() != 101 || f.guard.Blocks() != 1 {
		t.Fatalf("Tracked()=%d blocks=%d", f.guard.Tracked(), f.guard.Blocks())
	}
	if got := f.metric(t, "tracked_ips"); got != 101 {
		t.Fatalf("tracked_ips=%v", got)
	}
	f.clock.Advance(2 * time.Minute)
	f.guard.Sweep(f.clock.Now())
	if f.guard.Tracked() != 0 || f.guard.Blocks() != 1 {
		t.Fatalf("after 2 idle minutes: Tracked()=%d blocks=%d, want 0 and 1", f.guard.Tracked(), f.guard.Blocks())
	}
	f.clock.Advance(3 * time.Minute)
	f.guard.Sweep(f.clock.Now())
	if f.guard.Blocks() != 0 {
		t.Fatalf("expired block not swept")
	}
}

func TestFullBlockTableDropsSoonestExpiring(t *testing.T) {
	f := newFixture(t, flood.Config{Threshold: 1, BlockDuration: time.Hour, MaxBlocks: 1024})
	ip := func(i int) string {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0xc6336400+uint32(i)) // 198.51.100.0 + i
		return netip.AddrFrom4(b).String()
	}
	for i := range 1025 {
		f.clock.Advance(time.Second)
		f.sendN(2, ip(i))
	}
	if got := f.metric(t, "blocked_ips_dropped_total"); got != 1 {
		t.Fatalf("blocked_ips_dropped_total=%v, want 1", got)
	}
	if f.guard.BlockedCount() != 1024 {
		t.Fatalf("BlockedCount()=%d, want the cap 1024", f.guard.BlockedCount())
	}
	if f.send(ip(0)).Code != 200 {
		t.Fatal("the block expiring soonest was not the one dropped")
	}
	for _, i := range []int{1, 512, 1024} {
		if f.send(ip(i)).Code != 429 {
			t.Fatalf("block %d lost", i)
		}
	}
	if n := f.logs.CountMsg("block table full: dropped the blocks expiring soonest"); n != 1 {
		t.Fatalf("%d drop warnings, want 1", n)
	}
}

func TestBlockLogIsBounded(t *testing.T) {
	f := newFixture(t, flood.Config{Threshold: 1, BlockDuration: time.Hour})
	for i := range 300 {
		f.sendN(2, netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}).String())
	}
	if n := f.logs.CountMsg("ip blocked"); n != flood.BlockLogsPerMinute {
		t.Fatalf("%d block lines in a minute, want %d", n, flood.BlockLogsPerMinute)
	}
	if got := f.metric(t, "blocked_ips_total"); got != 300 {
		t.Fatalf("blocked_ips_total=%v, want 300", got)
	}
	f.clock.Advance(time.Minute)
	f.sendN(2, "203.0.113.1")
	if !strings.Contains(f.logs.String(), `"blocks_not_logged":200`) {
		t.Fatal("the next block line does not report the 200 blocks not logged")
	}
}

// TestBlocksSurviveChurn: an attacker spraying other addresses evicts
// counters, never blocks.
func TestBlocksSurviveChurn(t *testing.T) {
	f := newFixture(t, flood.Config{Threshold: 100, BlockDuration: 10 * time.Minute, MaxTrackedIPs: 65536})
	const offender = "203.0.113.66"
	f.sendN(101, offender)
	// Spray through the guard itself (request.Info as the chain sets it;
	// httptest for 300k requests would only slow the test down).
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	w := httptest.NewRecorder()
	in, r := request.New(w, r, time.Now(), 0)
	for i := range 300000 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x0b000000+uint32(i))
		in.ClientIP = netip.AddrFrom4(b)
		f.step.ServeHTTP(in.Writer(), r)
		if i%50000 == 0 {
			f.clock.Advance(time.Second)
		}
	}
	if n := f.guard.Tracked(); n > 65536 {
		t.Fatalf("%d counters, over the cap", n)
	}
	if f.guard.Evictions() < 300000-65536 {
		t.Fatalf("only %d evictions", f.guard.Evictions())
	}
	if w := f.send(offender); w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("offender after the churn: %d, want 429 with Retry-After", w.Code)
	}
}

func TestConcurrentRequests(t *testing.T) {
	f := newFixture(t, flood.Config{Threshold: 1000, BlockDuration: time.Minute, MaxTrackedIPs: 1024})
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for w := range 8 {
		wg.Go(func() {
			for i := range 400 {
				ip := "198.51.100.1"
				if i%2 == 1 {
					ip = netip.AddrFrom4([4]byte{10, 1, byte(w), byte(i)}).String()
				}
				if f.send(ip).Code == 200 && ip == "198.51.100.1" {
					mu.Lock()
					passed++
					mu.Unlock()
				}
				if i%100 == 0 {
					f.guard.Sweep(f.clock.Now())
					f.guard.Blocked(f.clock.Now())
				}
			}
		})
	}
	wg.Wait()
	if passed != 1000 {
		t.Fatalf("%d of 1600 requests of one client passed, want the threshold 1000", passed)
	}
}

// TestWrapAndArrivalTime: a guard built before the chain (for the admin
// API) serves through Wrap, and with no clock configured it takes the time
// the envelope read (request.Info.Start).
func TestWrapAndArrivalTime(t *testing.T) {
	g, err := flood.New(flood.Config{Threshold: 2, BlockDuration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := New(g)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	arrival := time.Now().Add(time.Hour)
	for i, tc := range []struct {
		at   time.Duration
		want int
	}{{at: 0, want: 200}, {at: 0, want: 200}, {at: 0, want: 429}, {at: 59 * time.Second, want: 429}, {at: 60 * time.Second, want: 200}} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		w := httptest.NewRecorder()
		in, r := request.New(w, r, arrival.Add(tc.at), 0)
		in.ClientIP = netip.MustParseAddr("198.51.100.1")
		h.ServeHTTP(in.Writer(), r)
		if w.Code != tc.want {
			t.Fatalf("request %d at +%v: %d, want %d", i, tc.at, w.Code, tc.want)
		}
	}
	if len(g.Blocked(arrival)) != 1 || len(g.Blocked(arrival.Add(time.Minute))) != 0 {
		t.Fatal("block not listed at its time, or listed after its end")
	}
}
