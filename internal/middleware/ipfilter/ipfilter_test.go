package ipfilter

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/middleware/clientip"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/testutil"
)

var (
	mustPrefix = netip.MustParsePrefix
	mustAddr   = netip.MustParseAddr
)

// chain builds the steps around the filter as order.go does: begin
// (request.Info), a request ID, client IP resolution, then the filter. The
// returned *request.Info pointer is filled with the last request's Info as
// the handler after the filter saw it (nil if it was not reached).
func chain(l *iplist.Lists, trusted []netip.Prefix, log *slog.Logger, reg prometheus.Registerer) (http.Handler, **request.Info) {
	var reached *request.Info
	final := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = request.From(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	filter := New(l, log, reg)(final)
	ip := clientip.New(realip.NewResolver(trusted))(filter)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = nil
		in, r := request.New(w, r, time.Now(), 0)
		in.ID = "req-1"
		ip.ServeHTTP(in.Writer(), r)
	})
	return h, &reached
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

func TestMiddleware(t *testing.T) {
	proxy := mustPrefix("10.0.0.0/24") // the trusted edge proxy's range
	tests := []struct {
		name            string
		allow, deny     []string
		remote          string
		xff             string
		wantStatus      int
		wantAllowlisted bool
	}{
		{name: "neutral client passes", deny: []string{"192.0.2.0/24"}, remote: "198.51.100.1:5000", wantStatus: 204},
		{name: "denied exact IPv4", deny: []string{"198.51.100.1"}, remote: "198.51.100.1:5000", wantStatus: 403},
		{name: "denied by CIDR", deny: []string{"198.51.100.0/24"}, remote: "198.51.100.77:5000", wantStatus: 403},
		{name: "denied exact IPv6 (not only its /64)", deny: []string{"2001:db8::5"}, remote: "[2001:db8::5]:5000", wantStatus: 403},
		{name: "same /64, other address passes", deny: []string{"2001:db8::5"}, remote: "[2001:db8::6]:5000", wantStatus: 204},
		{name: "IPv4-mapped peer denied", deny: []string{"198.51.100.1"}, remote: "[::ffff:198.51.100.1]:5000", wantStatus: 403},
		{name: "allow-listed client marked", allow: []string{"203.0.113.0/24"}, remote: "203.0.113.9:1", wantStatus: 204, wantAllowlisted: true},
		{name: "allow wins over deny", allow: []string{"203.0.113.9"}, deny: []string{"203.0.113.0/24"}, remote: "203.0.113.9:1", wantStatus: 204, wantAllowlisted: true},
		{
			name: "spoofed XFF from untrusted peer does not escape deny",
			deny: []string{"198.51.100.1"}, remote: "198.51.100.1:5000", xff: "203.0.113.9",
			allow: []string{"203.0.113.9"}, wantStatus: 403,
		},
		{
			name:  "spoofed XFF from untrusted peer cannot claim an allowed IP",
			allow: []string{"203.0.113.9"}, remote: "198.51.100.2:5000", xff: "203.0.113.9",
			wantStatus: 204,
		},
		{name: "client behind trusted proxy denied", deny: []string{"198.51.100.1"}, remote: "10.0.0.5:4000", xff: "198.51.100.1", wantStatus: 403},
		{name: "client behind trusted proxy allowed", allow: []string{"203.0.113.9"}, remote: "10.0.0.5:4000", xff: "203.0.113.9", wantStatus: 204, wantAllowlisted: true},
		{name: "mapped client in trusted XFF denied", deny: []string{"198.51.100.1"}, remote: "10.0.0.5:4000", xff: "::ffff:198.51.100.1", wantStatus: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := iplist.NewLists(testutil.Prefixes(cidrs(tc.allow)...), testutil.Prefixes(cidrs(tc.deny)...))
			reg := prometheus.NewRegistry()
			var logBuf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			h, reached := chain(l, []netip.Prefix{proxy}, log, reg)

			r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)

			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, tc.wantStatus, rec.Body)
			}
			denied := counterValue(t, reg, "denied_requests_total")
			if tc.wantStatus == http.StatusForbidden {
				if *reached != nil {
					t.Error("a denied request reached the next handler")
				}
				var body map[string]string
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Fatalf("403 body %q is not JSON: %v", rec.Body, err)
				}
				if body["error"] != "forbidden" || body["request_id"] != "req-1" {
					t.Errorf("403 body = %v", body)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				if denied != 1 {
					t.Errorf("denied_requests_total = %v, want 1", denied)
				}
				if !strings.Contains(logBuf.String(), `"level":"DEBUG"`) || !strings.Contains(logBuf.String(), `"request_id":"req-1"`) {
					t.Errorf("no debug log line for the denial: %q", logBuf.String())
				}
				return
			}
			if denied != 0 {
				t.Errorf("denied_requests_total = %v, want 0", denied)
			}
			if *reached == nil {
				t.Fatal("next handler not reached")
			}
			if got := (*reached).Allowlisted; got != tc.wantAllowlisted {
				t.Errorf("Allowlisted = %v, want %v", got, tc.wantAllowlisted)
			}
		})
	}
}

// cidrs turns bare IPs into host prefixes for the test tables.
func cidrs(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if !strings.Contains(s, "/") {
			a := mustAddr(s)
			s = netip.PrefixFrom(a, a.BitLen()).String()
		}
		out[i] = s
	}
	return out
}

// A change through iplist.Lists applies to the very next request.
func TestMiddlewareRuntimeChange(t *testing.T) {
	l := iplist.NewLists(nil, nil)
	h, _ := chain(l, nil, nil, nil)
	do := func() int {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "198.51.100.1:1"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	steps := []struct {
		name   string
		change func()
		want   int
	}{
		{name: "initially neutral", change: func() {}, want: 204},
		{name: "denied after add", change: func() { l.Add(iplist.Deny, mustPrefix("198.51.100.0/24")) }, want: 403},
		{name: "allowed wins after allow add", change: func() { l.Add(iplist.Allow, mustPrefix("198.51.100.1/32")) }, want: 204},
		{name: "denied again after allow remove", change: func() { l.Remove(iplist.Allow, mustPrefix("198.51.100.1/32")) }, want: 403},
		{name: "neutral after deny remove", change: func() { l.Remove(iplist.Deny, mustPrefix("198.51.100.0/24")) }, want: 204},
	}
	for _, s := range steps {
		s.change()
		if got := do(); got != s.want {
			t.Errorf("%s: status %d, want %d", s.name, got, s.want)
		}
	}
}

// Building the step twice on one registry (a rebuilt chain) must not panic
// and must share the counter.
func TestRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := iplist.NewLists(nil, testutil.Prefixes("198.51.100.1/32"))
	h1, _ := chain(l, nil, nil, reg)
	h2, _ := chain(l, nil, nil, reg)
	for _, h := range []http.Handler{h1, h2} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "198.51.100.1:1"
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if got := counterValue(t, reg, "denied_requests_total"); got != 2 {
		t.Errorf("denied_requests_total = %v, want 2", got)
	}
}

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

// The step adds no allocation for an allowed or neutral client.
func TestMiddlewareAllocs(t *testing.T) {
	l := iplist.NewLists(testutil.Prefixes("203.0.113.0/24"), testutil.Prefixes("192.0.2.0/24"))
	h := New(l, nil, prometheus.NewRegistry())(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for _, client := range []string{"203.0.113.5", "198.51.100.1", "2001:db8::1"} {
		w := &nopWriter{h: http.Header{}}
		in, r := request.New(w, httptest.NewRequest(http.MethodGet, "/", nil), time.Now(), 0)
		in.ClientIP = mustAddr(client)
		if n := testing.AllocsPerRun(200, func() { h.ServeHTTP(w, r) }); n != 0 {
			t.Errorf("client %s: %v allocs per request, want 0", client, n)
		}
	}
}

// BenchmarkMiddleware is the step around a lookup; the lookup's own cost,
// flat in the size of the lists, is iplist's BenchmarkLookup.
func BenchmarkMiddleware(b *testing.B) {
	l := iplist.NewLists(testutil.Prefixes("203.0.113.0/24", "2001:db8::/32"), testutil.Prefixes("192.0.2.0/24"))
	h := New(l, nil, prometheus.NewRegistry())(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := &nopWriter{h: http.Header{}}
	in, req := request.New(w, httptest.NewRequest(http.MethodGet, "/", nil), time.Now(), 0)
	in.ClientIP = mustAddr("198.51.100.1")
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
