package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/middleware/clientip"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testutil"
)

// harness is accesslog behind request.New (as order.go's begin does), with a
// JSON log in a buffer.
type harness struct {
	buf     bytes.Buffer
	metrics *telemetry.Metrics
	h       http.Handler
}

// newHarness logs at debug and samples nothing.
func newHarness(inner http.HandlerFunc) *harness {
	return newHarnessWith(slog.LevelDebug, nil, inner)
}

// newHarnessWith logs at level through s (nil: no sampling).
func newHarnessWith(level slog.Level, s *Sampler, inner http.HandlerFunc) *harness {
	hs := &harness{metrics: telemetry.NewMetrics("test")}
	// The client IP step runs inside the access log, as in order.go.
	hs.h = New(telemetry.NewLogger(&hs.buf, level), hs.metrics, s)(clientip.New(realip.NewResolver(nil))(inner))
	return hs
}

// serve runs r through the chain; prepare may adjust r and the Info first.
func (hs *harness) serve(r *http.Request, prepare func(*request.Info)) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	in, r := request.New(rec, r, time.Now(), 0)
	if prepare != nil {
		prepare(in)
	}
	hs.h.ServeHTTP(in.Writer(), r)
	return rec
}

// lines returns the log as decoded JSON objects, failing on any line that
// is not exactly one JSON object.
func (hs *harness) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(hs.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not one JSON object: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestOneLinePerRequestWithFields(t *testing.T) {
	hs := newHarness(func(w http.ResponseWriter, r *http.Request) {
		in := request.From(r.Context())
		in.Endpoint = "/api"
		_, _ = w.Write([]byte("hello"))
	})
	for i := range 3 {
		r := httptest.NewRequest(http.MethodPost, "/api/items", nil)
		r.RemoteAddr = "203.0.113.9:4711"
		hs.serve(r, func(in *request.Info) { in.ID = fmt.Sprintf("rid-%d", i) })
	}
	lines := hs.lines(t)
	if len(lines) != 3 {
		t.Fatalf("got %d log lines, want 3:\n%s", len(lines), hs.buf.String())
	}
	for i, l := range lines {
		want := map[string]any{
			"request_id": fmt.Sprintf("rid-%d", i),
			"client_ip":  "203.0.113.9",
			"method":     "POST",
			"path":       "/api/items",
			"route":      "/api",
			"status":     float64(200),
			"bytes":      float64(5),
			"level":      "INFO",
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("line %d: %s = %v (%T), want %v", i, k, l[k], l[k], v)
			}
		}
		if d, ok := l["duration_ms"].(float64); !ok || d < 0 {
			t.Errorf("line %d: duration_ms = %v, want a non-negative number", i, l["duration_ms"])
		}
	}
}

func TestOptionalFields(t *testing.T) {
	hs := newHarness(func(w http.ResponseWriter, r *http.Request) {
		in := request.From(r.Context())
		in.Backend = "http://10.0.0.1:8080"
		in.Attempts = 3
		in.UserID = "alice"
		in.Err = errors.New("upstream timeout")
		w.WriteHeader(http.StatusGatewayTimeout)
	})
	hs.serve(httptest.NewRequest(http.MethodGet, "/x", nil), nil)
	lines := hs.lines(t)
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1", len(lines))
	}
	for k, v := range map[string]any{"backend": "http://10.0.0.1:8080", "retries": float64(2), "user.id": "alice", "error": "upstream timeout"} {
		if lines[0][k] != v {
			t.Errorf("%s = %v, want %v", k, lines[0][k], v)
		}
	}
}

func TestLevelByStatus(t *testing.T) {
	tests := []struct {
		name      string
		status    int // 0: the handler writes nothing
		logStatus int
		wantLevel string
		wantLog   int // status logged
	}{
		{name: "200 at info", status: 200, wantLevel: "INFO", wantLog: 200},
		{name: "nothing written logs 200 at info", status: 0, wantLevel: "INFO", wantLog: 200},
		{name: "301 at info", status: 301, wantLevel: "INFO", wantLog: 301},
		{name: "401 at info", status: 401, wantLevel: "INFO", wantLog: 401},
		{name: "403 at info", status: 403, wantLevel: "INFO", wantLog: 403},
		{name: "404 at info", status: 404, wantLevel: "INFO", wantLog: 404},
		{name: "429 at info", status: 429, wantLevel: "INFO", wantLog: 429},
		{name: "500 at warn", status: 500, wantLevel: "WARN", wantLog: 500},
		{name: "503 at warn", status: 503, wantLevel: "WARN", wantLog: 503},
		{name: "LogStatus 499 overrides nothing written", status: 0, logStatus: 499, wantLevel: "INFO", wantLog: 499},
		{name: "LogStatus 499 overrides a written 502", status: 502, logStatus: 499, wantLevel: "INFO", wantLog: 499},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// At info, the default LOG_LEVEL: client rejections are the
			// audit trail and must be there.
			hs := newHarnessWith(slog.LevelInfo, nil, func(w http.ResponseWriter, r *http.Request) {
				if tc.logStatus != 0 {
					request.From(r.Context()).LogStatus = tc.logStatus
				}
				if tc.status != 0 {
					w.WriteHeader(tc.status)
				}
			})
			hs.serve(httptest.NewRequest(http.MethodGet, "/x", nil), nil)
			lines := hs.lines(t)
			if len(lines) != 1 {
				t.Fatalf("got %d lines, want 1", len(lines))
			}
			if lines[0]["level"] != tc.wantLevel || lines[0]["status"] != float64(tc.wantLog) {
				t.Errorf("level=%v status=%v, want level=%s status=%d", lines[0]["level"], lines[0]["status"], tc.wantLevel, tc.wantLog)
			}
			// The metrics count what was logged.
			if got := countSeries(t, hs.metrics, "http_requests_total", "status", fmt.Sprint(tc.wantLog)); got != 1 {
				t.Errorf("http_requests_total{status=%q} series = %d, want 1", fmt.Sprint(tc.wantLog), got)
			}
		})
	}
}

func TestHostilePathIsEscaped(t *testing.T) {
	tests := []struct {
		name string
		path string
	}{
		{name: "newline", path: "/a\nb"},
		{name: "CR LF forged log line", path: "/a\r\n{\"level\":\"ERROR\",\"msg\":\"forged\"}"},
		{name: "quotes and backslash", path: `/a"b\c`},
		{name: "NUL and escape", path: "/a\x00b\x1b[31mred"},
		{name: "DEL and tab", path: "/a\x7f\tb"},
		{name: "unicode line separators", path: "/a\u2028b\u2029c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHarness(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.URL.Path = tc.path
			hs.serve(r, nil)
			raw := hs.buf.String()
			if strings.Count(raw, "\n") != 1 || !strings.HasSuffix(raw, "\n") {
				t.Fatalf("want exactly one log line, got %q", raw)
			}
			if strings.ContainsAny(strings.TrimSuffix(raw, "\n"), "\r\n\x00\x1b") {
				t.Fatalf("raw control characters in the log line: %q", raw)
			}
			lines := hs.lines(t)
			if lines[0]["path"] != tc.path {
				t.Errorf("path = %q, want %q", lines[0]["path"], tc.path)
			}
		})
	}
	t.Run("invalid UTF-8 stays valid JSON", func(t *testing.T) {
		hs := newHarness(func(w http.ResponseWriter, r *http.Request) {})
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.Path = "/a\xff\xfeb"
		hs.serve(r, nil)
		if !json.Valid(bytes.TrimSpace(hs.buf.Bytes())) {
			t.Fatalf("not valid JSON: %q", hs.buf.String())
		}
		if len(hs.lines(t)) != 1 {
			t.Fatalf("want one line: %q", hs.buf.String())
		}
	})
}

// countSeries counts the series of a metric family, optionally only those
// whose label has value.
func countSeries(t *testing.T, m *telemetry.Metrics, name, label, value string) int {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if label == "" {
				n++
				continue
			}
			for _, l := range s.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					n++
				}
			}
		}
	}
	return n
}

func TestMetricsCardinalityBounded(t *testing.T) {
	hs := newHarness(func(w http.ResponseWriter, r *http.Request) {
		// Nothing matched: the endpoint stays "unmatched".
		w.WriteHeader(http.StatusNotFound)
	})
	for i := range 1000 {
		path := fmt.Sprintf("/%d/%x", i, rand.Uint64())
		method := []string{"GET", "POST", "FOO", "BAR" + fmt.Sprint(i)}[i%4]
		hs.serve(httptest.NewRequest(method, path, nil), nil)
	}
	// method ∈ {GET, POST, OTHER} × endpoint "unmatched" × status 404.
	if got := countSeries(t, hs.metrics, "http_requests_total", "", ""); got == 0 || got > 3 {
		t.Errorf("http_requests_total has %d series after 1000 random paths, want 1..3", got)
	}
	if got := countSeries(t, hs.metrics, "http_requests_total", "endpoint", "unmatched"); got == 0 {
		t.Errorf("no http_requests_total series with endpoint=unmatched")
	}
	// The duration histogram is per method × endpoint: 10 methods at most.
	if got := countSeries(t, hs.metrics, "http_request_duration_seconds", "", ""); got > 10 {
		t.Errorf("http_request_duration_seconds has %d series, want ≤ 10", got)
	}
	s := hs.metrics.Totals.Snapshot()
	if s.Requests != 1000 || s.Status[4] != 1000 || s.Inflight != 0 {
		t.Errorf("totals = %+v, want 1000 requests, all 4xx, none in flight", s)
	}
}

func TestRejectionLinesSampledRequestsAllCounted(t *testing.T) {
	type burst struct {
		ip     string
		status int
		n      int
	}
	tests := []struct {
		name           string
		level          slog.Level
		rate           int
		bursts         []burst
		wantLines      map[int]int // by status
		wantSuppressed int
		wantTracked    int
	}{
		{
			name:  "403 and 429 sampled per client, the rest all written",
			level: slog.LevelInfo, rate: 5,
			bursts: []burst{
				{"203.0.113.9", 429, 50}, {"203.0.113.10", 403, 50},
				{"203.0.113.9", 200, 50}, {"203.0.113.9", 404, 50}, {"203.0.113.9", 401, 50},
			},
			wantLines:      map[int]int{429: 5, 403: 5, 200: 50, 404: 50, 401: 50},
			wantSuppressed: 90, wantTracked: 2,
		},
		{
			name:  "ACCESS_LOG_REJECT_RATE=0 writes every line",
			level: slog.LevelInfo, rate: 0,
			bursts:    []burst{{"203.0.113.9", 429, 50}, {"203.0.113.10", 403, 50}},
			wantLines: map[int]int{429: 50, 403: 50},
		},
		{
			name:  "LOG_LEVEL=warn: no line, no sampling state",
			level: slog.LevelWarn, rate: 5,
			bursts:    []burst{{"203.0.113.9", 429, 50}, {"203.0.113.9", 503, 3}},
			wantLines: map[int]int{503: 3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			metrics := telemetry.NewMetrics("test")
			s, err := NewSampler(SamplerConfig{Rate: tc.rate, Clock: newTickClock(), Registerer: metrics.Registry})
			if err != nil {
				t.Fatal(err)
			}
			var status int
			hs := &harness{metrics: metrics}
			hs.h = New(telemetry.NewLogger(&hs.buf, tc.level), metrics, s)(clientip.New(realip.NewResolver(nil))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) })))
			sent := 0
			for _, b := range tc.bursts {
				status = b.status
				for range b.n {
					r := httptest.NewRequest(http.MethodGet, "/x", nil)
					r.RemoteAddr = b.ip + ":4711"
					hs.serve(r, nil)
					sent++
				}
			}
			got := map[int]int{}
			for _, l := range hs.lines(t) {
				got[int(l["status"].(float64))]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantLines) {
				t.Errorf("lines by status = %v, want %v", got, tc.wantLines)
			}
			// Sampling touches the log only: every request is counted.
			if s := metrics.Totals.Snapshot(); s.Requests != int64(sent) {
				t.Errorf("totals count %d requests, want %d", s.Requests, sent)
			}
			total := 0.0
			mfs, _ := metrics.Registry.Gather()
			for _, mf := range mfs {
				if mf.GetName() == "http_requests_total" {
					for _, m := range mf.GetMetric() {
						total += m.GetCounter().GetValue()
					}
				}
			}
			if int(total) != sent {
				t.Errorf("http_requests_total sums to %v, want %d", total, sent)
			}
			if got := testutil.MetricValue(t, metrics.Registry, "access_log_suppressed_total"); int(got) != tc.wantSuppressed {
				t.Errorf("access_log_suppressed_total = %v, want %d", got, tc.wantSuppressed)
			}
			if got := s.tracked(); got != tc.wantTracked {
				t.Errorf("tracked() = %d, want %d", got, tc.wantTracked)
			}
		})
	}
}
