package ratelimit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/limiter"
	"github.com/portcullis/portcullis/internal/middleware/clientip"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
)

var resolver = realip.NewResolver([]netip.Prefix{
	netip.MustParsePrefix("127.0.0.1/32"),
	netip.MustParsePrefix("10.9.0.0/16"),
})

// envelope builds the chain the way middleware/order.go does: request.New
// (its begin step), clientip.New, then the step under test. allow marks
// these clients allow-listed, as the ipfilter step would.
func envelope(h http.Handler, allow ...string) http.Handler {
	allowed := map[netip.Addr]bool{}
	for _, a := range allow {
		allowed[netip.MustParseAddr(a)] = true
	}
	mark := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in := request.From(r.Context())
		in.Allowlisted = allowed[in.ClientIP]
		h.ServeHTTP(w, r)
	})
	inner := clientip.New(resolver)(mark)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		inner.ServeHTTP(in.Writer(), r)
	})
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

type fixture struct {
	clock  *testutil.Clock
	reg    *prometheus.Registry
	shared *limiter.Limits
	logs   *bytes.Buffer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{clock: testutil.NewClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)), reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	var err error
	f.shared, err = limiter.NewLimits(limiter.Config{
		MaxTrackedIPs: 4096,
		Log:           slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:    f.reg,
		Now:           f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) limiter(t testing.TB, rps float64, burst int, next http.Handler) *handler {
	t.Helper()
	return mustHandler(t, f.shared, rps, burst, next, false)
}

// mustHandler is the step's handler over a new limit of s.
func mustHandler(t testing.TB, s *limiter.Limits, rps float64, burst int, next http.Handler, route bool) *handler {
	t.Helper()
	l, err := s.New(rps, burst, route)
	if err != nil {
		t.Fatal(err)
	}
	return newHandler(l, next)
}

func (f *fixture) metric(t testing.TB, name string) float64 {
	t.Helper()
	return testutil.MetricValue(t, f.reg, name)
}

// send makes one request from remote (an IP; a port is added) with
// optional X-Forwarded-For.
func send(h http.Handler, remote string, xff ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
	r.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(remote), 40000).String()
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

type want struct {
	status     int
	remaining  string
	reset      string
	retryAfter string
}

func check(t *testing.T, step string, w *httptest.ResponseRecorder, limit string, wt want) {
	t.Helper()
	got := want{
		status:     w.Code,
		remaining:  w.Header().Get("RateLimit-Remaining"),
		reset:      w.Header().Get("RateLimit-Reset"),
		retryAfter: w.Header().Get("Retry-After"),
	}
	if got != wt || w.Header().Get("RateLimit-Limit") != limit {
		t.Fatalf("%s: got %+v limit=%q; want %+v limit=%q", step, got, w.Header().Get("RateLimit-Limit"), wt, limit)
	}
}

func TestExactnessOverTime(t *testing.T) {
	type step struct {
		name    string
		advance time.Duration
		want    want
	}
	tests := []struct {
		name  string
		rps   float64
		burst int
		steps []step
	}{
		{
			name: "0.5/s burst 3: header values exact", rps: 0.5, burst: 3,
			steps: []step{
				{name: "1st", want: want{status: 200, remaining: "2", reset: "2"}},
				{name: "2nd", want: want{status: 200, remaining: "1", reset: "4"}},
				{name: "3rd empties the bucket: reset = next token", want: want{status: 200, remaining: "0", reset: "2"}},
				{name: "4th refused", want: want{status: 429, remaining: "0", reset: "2", retryAfter: "2"}},
				{name: "1s later still refused", advance: time.Second, want: want{status: 429, remaining: "0", reset: "1", retryAfter: "1"}},
				{name: "1.5s later: Retry-After rounds up", advance: 500 * time.Millisecond, want: want{status: 429, remaining: "0", reset: "1", retryAfter: "1"}},
				{name: "token back after 1/rps", advance: 500 * time.Millisecond, want: want{status: 200, remaining: "0", reset: "2"}},
				{name: "and only one", want: want{status: 429, remaining: "0", reset: "2", retryAfter: "2"}},
				{name: "full after 6s idle", advance: 6 * time.Second, want: want{status: 200, remaining: "2", reset: "2"}},
			},
		},
		{
			name: "10/s burst 20 (security.md A7)", rps: 10, burst: 20,
			steps: func() []step {
				var s []step
				for i := range 20 {
					reset := "1" // time until full, rounded up: ceil((i+1)*100ms)
					if i >= 10 {
						reset = "2"
					}
					if i == 19 {
						reset = "1" // empty: next token in 100ms
					}
					s = append(s, step{name: "burst", want: want{status: 200, remaining: itoa(19 - i), reset: reset}})
				}
				s = append(s,
					step{name: "21st refused", want: want{status: 429, remaining: "0", reset: "1", retryAfter: "1"}},
					step{name: "100ms: one more", advance: 100 * time.Millisecond, want: want{status: 200, remaining: "0", reset: "1"}},
					step{name: "then refused", want: want{status: 429, remaining: "0", reset: "1", retryAfter: "1"}},
					step{name: "1s: ten more", advance: time.Second, want: want{status: 200, remaining: "9", reset: "2"}},
				)
				for i := range 9 {
					s = append(s, step{name: "refill", want: want{status: 200, remaining: itoa(8 - i), reset: "2"}})
				}
				s[len(s)-1].want.reset = "1"
				return append(s, step{name: "11th refused", want: want{status: 429, remaining: "0", reset: "1", retryAfter: "1"}})
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			h := envelope(f.limiter(t, tc.rps, tc.burst, ok))
			refused := 0
			for i, s := range tc.steps {
				f.clock.Advance(s.advance)
				check(t, itoa(i)+" "+s.name, send(h, "198.51.100.7"), itoa(tc.burst), s.want)
				if s.want.status == 429 {
					refused++
				}
			}
			if got := f.metric(t, "rate_limited_requests_total"); got != float64(refused) {
				t.Fatalf("rate_limited_requests_total=%v, want %d", got, refused)
			}
		})
	}
}

func itoa(n int) string { return intValue(n)[0] }

func TestRefusalIsJSON(t *testing.T) {
	f := newFixture(t)
	h := envelope(f.limiter(t, 1, 1, ok))
	send(h, "198.51.100.7")
	w := send(h, "198.51.100.7")
	var body struct {
		Error     string `json:"error"`
		RequestID string `json:"request_id"`
	}
	if w.Code != 429 || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error == "" {
		t.Fatalf("refusal: %d %q", w.Code, w.Body.String())
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Fatal("429 may be cached")
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		name     string
		first    []string // remote, then XFF (optional)
		second   []string
		sameBkt  bool
		headers  bool // RateLimit-* expected on the second client's answers
		allowArg []string
	}{
		{name: "IPv6 in one /64 share a bucket", first: []string{"2001:db8:1:2::1"}, second: []string{"2001:db8:1:2:ffff::9"}, sameBkt: true, headers: true},
		{name: "different /64s do not", first: []string{"2001:db8:1:2::1"}, second: []string{"2001:db8:1:3::1"}, headers: true},
		{name: "IPv4 addresses are keyed whole", first: []string{"198.51.100.1"}, second: []string{"198.51.100.2"}, headers: true},
		{name: "untrusted client cannot escape by X-Forwarded-For", first: []string{"203.0.113.5", "1.1.1.1"}, second: []string{"203.0.113.5", "2.2.2.2"}, sameBkt: true, headers: true},
		{name: "clients behind a trusted proxy are told apart", first: []string{"10.9.0.1", "198.51.100.1"}, second: []string{"10.9.0.1", "198.51.100.2"}, headers: true},
		{name: "clients behind a trusted proxy per /64", first: []string{"10.9.0.1", "2001:db8::1"}, second: []string{"10.9.0.2", "2001:db8::2"}, sameBkt: true, headers: true},
		{name: "trusted proxy that is itself the client is limited as one client", first: []string{"10.9.0.1"}, second: []string{"10.9.0.1"}, sameBkt: true, headers: true},
		{name: "trusted proxy with junk X-Forwarded-For is limited as one client", first: []string{"10.9.0.1", "not-an-ip"}, second: []string{"10.9.0.1", "junk, also junk"}, sameBkt: true, headers: true},
		{name: "allow-listed client skips the limit", first: []string{"198.51.100.50"}, second: []string{"198.51.100.50"}, allowArg: []string{"198.51.100.50"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			h := envelope(f.limiter(t, 1, 2, ok), tc.allowArg...)
			for range 2 {
				send(h, tc.first[0], tc.first[1:]...)
			}
			for i := range 5 {
				w := send(h, tc.second[0], tc.second[1:]...)
				wantCode := 200
				if tc.sameBkt || (tc.headers && i >= 2) {
					wantCode = 429
				}
				if w.Code != wantCode {
					t.Fatalf("second client request %d: %d, want %d", i+1, w.Code, wantCode)
				}
				if has := w.Header().Get("RateLimit-Limit") != ""; has != tc.headers {
					t.Fatalf("RateLimit-Limit present=%v, want %v", has, tc.headers)
				}
			}
		})
	}
}

func TestRouteLimiter(t *testing.T) {
	f := newFixture(t)
	route := mustHandler(t, f.shared, 1, 2, ok, true)
	global := f.limiter(t, 100, 10, route)
	h := envelope(global)
	for i, wt := range []want{
		{status: 200, remaining: "1", reset: "1"},
		{status: 200, remaining: "0", reset: "1"},
		{status: 429, remaining: "0", reset: "1", retryAfter: "1"},
	} {
		check(t, "route "+itoa(i), send(h, "198.51.100.7"), "2", wt)
	}
	// The global bucket was charged three times: 7 left.
	d := global.l.Allow(netip.MustParseAddr("198.51.100.7"), f.clock.Now())
	if !d.Allowed || d.Remaining != 6 {
		t.Fatalf("global bucket: %+v, want 6 remaining after 4 requests", d)
	}
	// Other clients have their own route bucket.
	check(t, "other client", send(h, "198.51.100.8"), "2", want{status: 200, remaining: "1", reset: "1"})
	if got := f.metric(t, "rate_limited_requests_total"); got != 1 {
		t.Fatalf("rate_limited_requests_total=%v, want 1", got)
	}

	// A route limit looser than the default leaves the default's headers.
	loose := mustHandler(t, f.shared, 1000, 500, ok, true)
	h = envelope(f.limiter(t, 1, 3, loose))
	check(t, "default is closer to running out", send(h, "198.51.100.9"), "3", want{status: 200, remaining: "2", reset: "1"})
}

func TestConstructorValidates(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		rps   float64
		burst int
	}{
		{name: "zero rate", rps: 0, burst: 1},
		{name: "negative rate", rps: -1, burst: 1},
		{name: "NaN rate", rps: math.NaN(), burst: 1},
		{name: "infinite rate", rps: math.Inf(1), burst: 1},
		{name: "zero burst", rps: 1, burst: 0},
		{name: "bucket too large", rps: 1e-9, burst: math.MaxInt32},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.rps, tc.burst, f.shared); err == nil {
				t.Fatal("accepted")
			}
			if _, err := NewRoute(tc.rps, tc.burst, f.shared); err == nil {
				t.Fatal("route limiter accepted")
			}
		})
	}
	if _, err := New(1, 1, nil); err == nil {
		t.Fatal("nil Limits accepted")
	}
}

func TestConcurrentClientGetsBurstOnly(t *testing.T) {
	f := newFixture(t)
	l := f.limiter(t, 10, 20, ok)
	h := envelope(l)
	var mu sync.Mutex
	passed := 0
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			for range 20 {
				if send(h, "198.51.100.7").Code == 200 {
					mu.Lock()
					passed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if passed != 20 {
		t.Fatalf("%d of 2000 concurrent requests passed at a frozen clock, want the burst (20)", passed)
	}
}

func TestRejectionsLoggedOncePerMinuteAtDebug(t *testing.T) {
	f := newFixture(t)
	h := envelope(f.limiter(t, 1, 1, ok))
	for range 50 {
		send(h, "2001:db8:5::1")
	}
	lines := strings.Count(f.logs.String(), `"msg":"rate limited"`)
	if lines != 1 {
		t.Fatalf("%d log lines for 49 rejections, want 1:\n%s", lines, f.logs.String())
	}
	for _, s := range []string{`"level":"DEBUG"`, `"component":"ratelimit"`, `"key":"2001:db8:5::/64"`, `"client_ip":"2001:db8:5::1"`} {
		if !strings.Contains(f.logs.String(), s) {
			t.Fatalf("log line lacks %s: %s", s, f.logs.String())
		}
	}
	f.clock.Advance(time.Minute)
	send(h, "2001:db8:5::1")
	send(h, "2001:db8:5::1")
	if lines := strings.Count(f.logs.String(), `"msg":"rate limited"`); lines != 2 {
		t.Fatalf("%d log lines a minute later, want 2", lines)
	}
}

// TestDefaultClockIsArrivalTime: with no clock configured the limiter takes
// the time the envelope read (request.Info.Start) instead of reading one.
func TestDefaultClockIsArrivalTime(t *testing.T) {
	shared, err := limiter.NewLimits(limiter.Config{MaxTrackedIPs: 1024})
	if err != nil {
		t.Fatal(err)
	}
	l := mustHandler(t, shared, 1, 1, ok, false)
	arrival := time.Now().Add(time.Hour)
	for i, tc := range []struct {
		at   time.Duration
		want int
	}{{at: 0, want: 200}, {at: 0, want: 429}, {at: 999 * time.Millisecond, want: 429}, {at: time.Second, want: 200}} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		w := httptest.NewRecorder()
		in, r := request.New(w, r, arrival.Add(tc.at), 0)
		in.ClientIP = netip.MustParseAddr("198.51.100.1")
		l.ServeHTTP(in.Writer(), r)
		if w.Code != tc.want {
			t.Fatalf("request %d at +%v: %d, want %d", i, tc.at, w.Code, tc.want)
		}
	}
}
