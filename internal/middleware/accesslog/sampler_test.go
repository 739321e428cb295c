package accesslog

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testutil"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// tickClock is a testutil.Clock with a ticker: Advance delivers every tick
// it passes, waiting until Run takes each.
type tickClock struct {
	*testutil.Clock
	mu      sync.Mutex
	period  time.Duration
	next    time.Time
	c       chan time.Time
	ticking chan struct{} // closed once Run asked for its ticker
}

func newTickClock() *tickClock {
	return &tickClock{Clock: testutil.NewClock(t0), c: make(chan time.Time), ticking: make(chan struct{})}
}

func (c *tickClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.period, c.next = d, c.Now().Add(d)
	close(c.ticking)
	return c.c, func() {}
}

func (c *tickClock) Advance(d time.Duration) {
	target := c.Now().Add(d)
	for {
		c.mu.Lock()
		if c.period == 0 || c.next.After(target) {
			c.mu.Unlock()
			break
		}
		at := c.next
		c.next = c.next.Add(c.period)
		c.mu.Unlock()
		c.Clock.Advance(at.Sub(c.Now()))
		c.c <- at
	}
	c.Clock.Advance(target.Sub(c.Now()))
}

// samplerFixture is a sampler on a tick clock with its log and registry.
type samplerFixture struct {
	s     *Sampler
	clock *tickClock
	logs  *testutil.SyncBuffer
	reg   *prometheus.Registry
}

func newSamplerFixture(t *testing.T, rate, maxIPs int) *samplerFixture {
	t.Helper()
	f := &samplerFixture{clock: newTickClock(), logs: &testutil.SyncBuffer{}, reg: prometheus.NewRegistry()}
	var err error
	f.s, err = NewSampler(SamplerConfig{
		Rate: rate, MaxTrackedIPs: maxIPs, Clock: f.clock,
		Log: telemetry.NewLogger(f.logs, slog.LevelInfo), Registerer: f.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// summaries returns the summary lines logged so far.
func (f *samplerFixture) summaries(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(f.logs.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if m["msg"] == "access lines suppressed" {
			out = append(out, m)
		}
	}
	return out
}

// byClient indexes summaries by client_ip ("untracked" for the shared
// budget's line).
func byClient(t *testing.T, lines []map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, l := range lines {
		k, _ := l["client_ip"].(string)
		if l["untracked"] == true {
			k = "untracked"
		}
		if _, dup := out[k]; dup {
			t.Errorf("two summary lines for %s in one flush", k)
		}
		out[k] = l
	}
	return out
}

func v4(i uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 0x0a000000+i)
	return netip.AddrFrom4(b)
}

type send struct {
	at     time.Duration // since t0
	ip     string
	status int
	n      int
}

func TestSamplerRatePerClient(t *testing.T) {
	tests := []struct {
		name           string
		rate           int
		sends          []send
		wantLogged     map[string]int // by the IP as sent
		wantSuppressed int
		wantTracked    int
	}{
		{
			name:           "rate honoured in one second",
			rate:           3,
			sends:          []send{{ip: "203.0.113.1", status: 429, n: 10}},
			wantLogged:     map[string]int{"203.0.113.1": 3},
			wantSuppressed: 7, wantTracked: 1,
		},
		{
			name: "each second has its own budget",
			rate: 3,
			sends: []send{
				{ip: "203.0.113.1", status: 429, n: 5},
				{at: 999 * time.Millisecond, ip: "203.0.113.1", status: 429, n: 5},
				{at: time.Second, ip: "203.0.113.1", status: 429, n: 5},
				{at: 2500 * time.Millisecond, ip: "203.0.113.1", status: 403, n: 5},
			},
			wantLogged:     map[string]int{"203.0.113.1": 9},
			wantSuppressed: 11, wantTracked: 1,
		},
		{
			name: "IPs are independent",
			rate: 2,
			sends: []send{
				{ip: "203.0.113.1", status: 403, n: 50},
				{ip: "203.0.113.2", status: 429, n: 1},
				{ip: "198.51.100.7", status: 403, n: 5},
			},
			wantLogged:     map[string]int{"203.0.113.1": 2, "203.0.113.2": 1, "198.51.100.7": 2},
			wantSuppressed: 51, wantTracked: 3,
		},
		{
			name: "403 and 429 share one budget",
			rate: 4,
			sends: []send{
				{ip: "203.0.113.1", status: 403, n: 3},
				{ip: "203.0.113.1", status: 429, n: 3},
			},
			wantLogged:     map[string]int{"203.0.113.1": 4},
			wantSuppressed: 2, wantTracked: 1,
		},
		{
			name: "IPv6 keyed per /64",
			rate: 2,
			sends: []send{
				{ip: "2001:db8::1", status: 429, n: 2},
				{ip: "2001:db8::ffff:2", status: 429, n: 2},
				{ip: "2001:db8:0:1::1", status: 429, n: 2},
			},
			wantLogged:     map[string]int{"2001:db8::1": 2, "2001:db8:0:1::1": 2},
			wantSuppressed: 2, wantTracked: 2,
		},
		{
			name: "IPv4-mapped IPv6 is the IPv4 client",
			rate: 1,
			sends: []send{
				{ip: "192.0.2.1", status: 403, n: 1},
				{ip: "::ffff:192.0.2.1", status: 403, n: 1},
			},
			wantLogged:     map[string]int{"192.0.2.1": 1},
			wantSuppressed: 1, wantTracked: 1,
		},
		{
			name: "other statuses are never sampled nor tracked",
			rate: 1,
			sends: []send{
				{ip: "203.0.113.1", status: 200, n: 20},
				{ip: "203.0.113.1", status: 401, n: 20},
				{ip: "203.0.113.1", status: 404, n: 20},
				{ip: "203.0.113.1", status: 503, n: 20},
			},
			wantLogged:  map[string]int{"203.0.113.1": 80},
			wantTracked: 0,
		},
		{
			name:        "ACCESS_LOG_REJECT_RATE=0 logs every line and keeps no state",
			rate:        0,
			sends:       []send{{ip: "203.0.113.1", status: 429, n: 1000}, {ip: "203.0.113.2", status: 403, n: 1000}},
			wantLogged:  map[string]int{"203.0.113.1": 1000, "203.0.113.2": 1000},
			wantTracked: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newSamplerFixture(t, tc.rate, 0)
			logged := map[string]int{}
			for _, sd := range tc.sends {
				f.clock.Clock.Advance(t0.Add(sd.at).Sub(f.clock.Now()))
				ip := netip.MustParseAddr(sd.ip)
				for range sd.n {
					if f.s.admit(ip, sd.status) {
						logged[sd.ip]++
					}
				}
			}
			for ip, want := range tc.wantLogged {
				if logged[ip] != want {
					t.Errorf("%s: %d lines admitted, want %d", ip, logged[ip], want)
				}
			}
			for ip, n := range logged {
				if _, ok := tc.wantLogged[ip]; !ok && n > 0 {
					t.Errorf("%s: %d lines admitted, want none", ip, n)
				}
			}
			if got := testutil.MetricValue(t, f.reg, "access_log_suppressed_total"); got != float64(tc.wantSuppressed) {
				t.Errorf("access_log_suppressed_total = %v, want %d", got, tc.wantSuppressed)
			}
			if got := f.s.tracked(); got != tc.wantTracked {
				t.Errorf("tracked() = %d, want %d", got, tc.wantTracked)
			}
		})
	}
}

func TestSamplerNilAdmitsAll(t *testing.T) {
	var s *Sampler
	for range 100 {
		if !s.admit(netip.MustParseAddr("203.0.113.1"), 429) {
			t.Fatal("a nil sampler suppressed a line")
		}
	}
	s.flush(t0)
	s.Run(context.Background()) // returns at once: nothing to summarise
}

func TestSamplerSummaryContent(t *testing.T) {
	tests := []struct {
		name  string
		rate  int
		sends []send
		flush time.Duration
		want  map[string]map[string]any // client → expected fields
	}{
		{
			name: "one flood, by status",
			rate: 2,
			sends: []send{
				{ip: "203.0.113.1", status: 403, n: 5},
				{at: 10 * time.Second, ip: "203.0.113.1", status: 429, n: 7},
			},
			flush: time.Minute,
			want: map[string]map[string]any{"203.0.113.1": {
				"suppressed": 8.0, "logged": 4.0, "window": "1m0s",
				"statuses": map[string]any{"403": 3.0, "429": 5.0},
			}},
		},
		{
			name: "only clients with suppressed lines get one",
			rate: 3,
			sends: []send{
				{ip: "203.0.113.1", status: 429, n: 3},
				{ip: "203.0.113.2", status: 429, n: 4},
			},
			flush: time.Minute,
			want: map[string]map[string]any{"203.0.113.2": {
				"suppressed": 1.0, "logged": 3.0, "statuses": map[string]any{"429": 1.0},
			}},
		},
		{
			name:  "IPv6 named by its /64",
			rate:  1,
			sends: []send{{ip: "2001:db8:5::1", status: 403, n: 2}, {ip: "2001:db8:5::2", status: 403, n: 2}},
			flush: 30 * time.Second,
			want: map[string]map[string]any{"2001:db8:5::/64": {
				"suppressed": 3.0, "logged": 1.0, "window": "30s", "statuses": map[string]any{"403": 3.0},
			}},
		},
		{
			name:  "nothing suppressed, no line",
			rate:  10,
			sends: []send{{ip: "203.0.113.1", status: 429, n: 10}},
			flush: time.Minute,
			want:  map[string]map[string]any{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newSamplerFixture(t, tc.rate, 0)
			for _, sd := range tc.sends {
				f.clock.Clock.Advance(t0.Add(sd.at).Sub(f.clock.Now()))
				for range sd.n {
					f.s.admit(netip.MustParseAddr(sd.ip), sd.status)
				}
			}
			f.s.flush(t0.Add(tc.flush))
			got := byClient(t, f.summaries(t))
			if len(got) != len(tc.want) {
				t.Fatalf("%d summary lines, want %d:\n%s", len(got), len(tc.want), f.logs.String())
			}
			for client, fields := range tc.want {
				l, ok := got[client]
				if !ok {
					t.Fatalf("no summary for %s:\n%s", client, f.logs.String())
				}
				for k, v := range map[string]any{"level": "INFO", "component": "gateway"} {
					fields[k] = v
				}
				for k, v := range fields {
					if vm, ok := v.(map[string]any); ok {
						lm, _ := l[k].(map[string]any)
						if len(lm) != len(vm) {
							t.Errorf("%s: %s = %v, want %v", client, k, l[k], v)
						}
						for sk, sv := range vm {
							if lm[sk] != sv {
								t.Errorf("%s: %s.%s = %v, want %v", client, k, sk, lm[sk], sv)
							}
						}
						continue
					}
					if l[k] != v {
						t.Errorf("%s: %s = %v (%T), want %v", client, k, l[k], l[k], v)
					}
				}
			}
		})
	}
}

func TestSamplerResetsAfterFlush(t *testing.T) {
	f := newSamplerFixture(t, 2, 0)
	a, b := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	for range 10 {
		f.s.admit(a, 429)
	}
	f.clock.Clock.Advance(59*time.Second + 500*time.Millisecond)
	// b floods in the flush's own second: it keeps its count for that
	// second, so the flush does not give it a second budget.
	for range 3 {
		f.s.admit(b, 403)
	}
	f.s.flush(f.clock.Now())
	first := byClient(t, f.summaries(t))
	if first["203.0.113.1"]["suppressed"] != 8.0 || first["203.0.113.2"]["suppressed"] != 1.0 {
		t.Fatalf("first window: %v", first)
	}
	if got := f.s.tracked(); got != 1 {
		t.Errorf("tracked() after the flush = %d, want 1 (only the client active in the current second)", got)
	}
	if f.s.admit(b, 403) {
		t.Error("a flush granted a new budget within the same second")
	}
	// A quiet window: no new line, the counts were reset.
	f.clock.Clock.Advance(time.Minute)
	f.s.flush(f.clock.Now())
	second := f.summaries(t)
	if len(second) != 3 || second[2]["client_ip"] != "203.0.113.2" || second[2]["suppressed"] != 1.0 || second[2]["logged"] != 0.0 {
		t.Fatalf("second window: want only b's one suppressed line, got %v", second[2:])
	}
	if got := f.s.tracked(); got != 0 {
		t.Errorf("tracked() after a quiet window = %d, want 0", got)
	}
	// The next flood is counted afresh.
	for range 5 {
		f.s.admit(a, 429)
	}
	f.clock.Clock.Advance(time.Minute)
	f.s.flush(f.clock.Now())
	third := f.summaries(t)
	if len(third) != 4 || third[3]["client_ip"] != "203.0.113.1" || third[3]["suppressed"] != 3.0 || third[3]["logged"] != 2.0 {
		t.Fatalf("third window: %v", third[3:])
	}
	f.s.flush(f.clock.Now())
	if n := len(f.summaries(t)); n != 4 {
		t.Errorf("a flush with nothing suppressed wrote %d lines", n-4)
	}
}

func TestSamplerCapOnTrackedIPs(t *testing.T) {
	tests := []struct {
		name   string
		maxIPs int
		spray  int
	}{
		{name: "one shard", maxIPs: 64, spray: 20000},
		{name: "many shards", maxIPs: 1000, spray: 50000},
		{name: "MAX_TRACKED_IPS default", maxIPs: 0, spray: 300000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const rate = 5
			f := newSamplerFixture(t, rate, tc.maxIPs)
			capacity := tc.maxIPs
			if capacity == 0 {
				capacity = 262144
			}
			flooder := netip.MustParseAddr("198.51.100.1")
			sent, logged := 0, 0
			admit := func(ip netip.Addr, status int) {
				sent++
				if f.s.admit(ip, status) {
					logged++
				}
			}
			// A flooder already tracked...
			for range 100 {
				admit(flooder, 429)
			}
			// ...a spray of addresses, one rejection each...
			for i := range tc.spray {
				admit(v4(uint32(i)), 403)
			}
			if got := f.s.tracked(); got > capacity {
				t.Fatalf("tracked() = %d after a spray of %d, cap %d", got, tc.spray, capacity)
			}
			// ...neither the flooder's limit is lifted, nor can a new
			// flooder escape through the shared budget.
			fresh := netip.MustParseAddr("198.51.100.2")
			loggedBefore := logged
			for range 1000 {
				admit(flooder, 429)
				admit(fresh, 429)
			}
			if got := logged - loggedBefore; got > rate {
				t.Errorf("after the spray the flooders got %d more lines in the same second, want ≤ %d", got, rate)
			}
			if tc.spray > capacity && logged > capacity+2*rate {
				t.Errorf("%d lines admitted in one second, want ≤ cap %d + shared budget", logged, capacity)
			}
			// Every rejection is either logged or in a summary.
			f.clock.Clock.Advance(2 * time.Second)
			f.s.flush(f.clock.Now())
			suppressed := 0
			lines := byClient(t, f.summaries(t))
			for _, l := range lines {
				suppressed += int(l["suppressed"].(float64))
			}
			if tc.spray > capacity && lines["untracked"] == nil {
				t.Error("no summary line for the clients beyond the cap")
			}
			if logged+suppressed != sent {
				t.Errorf("logged %d + suppressed %d != sent %d", logged, suppressed, sent)
			}
			if got := testutil.MetricValue(t, f.reg, "access_log_suppressed_total"); int(got) != suppressed {
				t.Errorf("access_log_suppressed_total = %v, summaries say %d", got, suppressed)
			}
			// Memory is given back once the clients go quiet.
			if got := f.s.tracked(); got != 0 {
				t.Errorf("tracked() after the flush = %d, want 0", got)
			}
		})
	}
}

func TestSamplerConcurrentCountsAddUp(t *testing.T) {
	f := newSamplerFixture(t, 3, 100)
	var wg sync.WaitGroup
	var mu sync.Mutex
	logged := 0
	const workers, each = 8, 2000
	for w := range workers {
		wg.Go(func() {
			n := 0
			for i := range each {
				if f.s.admit(v4(uint32((w*each+i)%300)), 429) {
					n++
				}
			}
			mu.Lock()
			logged += n
			mu.Unlock()
		})
	}
	wg.Wait()
	f.s.flush(f.clock.Now().Add(time.Minute))
	suppressed := 0
	for _, l := range f.summaries(t) {
		suppressed += int(l["suppressed"].(float64))
	}
	if logged+suppressed != workers*each {
		t.Errorf("logged %d + suppressed %d != %d", logged, suppressed, workers*each)
	}
}

// panicOnce is a slog handler whose first summary line panics.
type panicOnce struct {
	slog.Handler
	mu       *sync.Mutex
	panicked *bool
}

func (h panicOnce) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	first := !*h.panicked && r.Message == "access lines suppressed"
	*h.panicked = *h.panicked || first
	h.mu.Unlock()
	if first {
		panic("log output broke")
	}
	return h.Handler.Handle(ctx, r)
}

func (h panicOnce) WithAttrs(as []slog.Attr) slog.Handler {
	return panicOnce{Handler: h.Handler.WithAttrs(as), mu: h.mu, panicked: h.panicked}
}

func TestSamplerRunLoop(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	clock := newTickClock()
	h := panicOnce{Handler: telemetry.NewLogger(logs, slog.LevelInfo).Handler(), mu: new(sync.Mutex), panicked: new(bool)}
	s, err := NewSampler(SamplerConfig{Rate: 1, Clock: clock, Log: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	flushed := make(chan struct{}, 1)
	s.onFlush = func() { flushed <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	<-clock.ticking
	ip := netip.MustParseAddr("203.0.113.1")
	flood := func(n int) {
		for range n {
			s.admit(ip, 429)
		}
	}
	waitFlush := func() {
		t.Helper()
		select {
		case <-flushed:
		case <-time.After(10 * time.Second):
			t.Fatal("no flush")
		}
	}
	count := func() int { return strings.Count(logs.String(), `"msg":"access lines suppressed"`) }

	// The first summary's output panics: logged, and the loop goes on.
	flood(5)
	clock.Advance(SummaryEvery)
	waitFlush()
	if !strings.Contains(logs.String(), `"msg":"access log summary panicked"`) || !strings.Contains(logs.String(), `"panic":"log output broke"`) {
		t.Fatalf("panic not logged:\n%s", logs.String())
	}
	// Less than a minute: no tick, no line.
	flood(3)
	clock.Advance(SummaryEvery - time.Second)
	if n := count(); n != 0 {
		t.Fatalf("%d summaries before the minute", n)
	}
	clock.Advance(time.Second)
	waitFlush()
	if n := count(); n != 1 || !strings.Contains(logs.String(), `"suppressed":2,`) {
		t.Fatalf("after the minute: %d summaries:\n%s", n, logs.String())
	}
	// What is pending at shutdown is written before Run returns.
	flood(4)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
	waitFlush()
	if n := count(); n != 2 || !strings.Contains(logs.String(), `"suppressed":3,`) {
		t.Fatalf("at shutdown: %d summaries:\n%s", n, logs.String())
	}
}
