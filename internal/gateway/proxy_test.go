package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestForwardsCleanPathAndHeaders(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{
		// The test client (127.0.0.1) is an ordinary, untrusted client here.
		"TRUSTED_PROXIES": "10.99.99.99/32",
		"SERVICE_ROUTES":  routes(`{"prefix":"/api/svc","target_url":"` + up + `/base"}`),
	})
	resp, body := get(t, gw.URL+"/api/svc/x/../y/%2e%2e/z?q=1&b=2",
		"X-Forwarded-For", "6.6.6.6",
		"X-Real-IP", "6.6.6.6",
		"X-User-ID", "admin",
		"X-Auth-Method", "jwt",
		"X-Request-ID", "client-id-1",
		"Connection", "X-Request-ID, X-Forwarded-For, X-Real-IP",
	)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	checks := []struct{ name, got, want string }{
		{"path", e.Path, "/base/z"},
		{"query", e.Query, "q=1&b=2"},
		{"X-Forwarded-For", strings.Join(e.Header["X-Forwarded-For"], "|"), "127.0.0.1"},
		{"X-Real-Ip", strings.Join(e.Header["X-Real-Ip"], "|"), "127.0.0.1"},
		{"X-Request-Id upstream", strings.Join(e.Header["X-Request-Id"], "|"), "client-id-1"},
		{"X-Request-Id back", resp.Header.Get("X-Request-Id"), "client-id-1"},
		{"X-User-Id", strings.Join(e.Header["X-User-Id"], "|"), ""},
		{"X-Auth-Method", strings.Join(e.Header["X-Auth-Method"], "|"), ""},
		{"X-Forwarded-Proto", e.Header.Get("X-Forwarded-Proto"), "http"},
		{"X-Forwarded-Host", e.Header.Get("X-Forwarded-Host"), gw.Addr},
		{"nosniff", resp.Header.Get("X-Content-Type-Options"), "nosniff"},
		{"frame", resp.Header.Get("X-Frame-Options"), "DENY"},
		{"no HSTS over plain HTTP", resp.Header.Get("Strict-Transport-Security"), ""},
		{"xss", resp.Header.Get("X-Xss-Protection"), "0"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestTrustedProxyChain(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{
		"TRUSTED_PROXIES": "127.0.0.1",
		"SERVICE_ROUTES":  routes(`{"prefix":"/","target_url":"` + up + `"}`),
	})
	_, body := get(t, gw.URL+"/x", "X-Forwarded-For", "6.6.6.6, 198.51.100.4", "X-Forwarded-Proto", "https")
	e := decodeEcho(t, body)
	if got := e.Header.Get("X-Forwarded-For"); got != "198.51.100.4, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := e.Header.Get("X-Real-Ip"); got != "198.51.100.4" {
		t.Errorf("X-Real-Ip = %q", got)
	}
	if got := e.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto from a trusted peer = %q, want kept", got)
	}
}

func TestRoutingAndOwnEndpoints(t *testing.T) {
	a, _ := serve(t, echoHandler("a"))
	b, _ := serve(t, echoHandler("b"))
	gw := start(t, map[string]string{
		"SERVICE_ROUTES": routes(
			`{"prefix":"/api/studio","target_url":"`+a+`"}`,
			`{"prefix":"/api/studio2","target_url":"`+b+`","strip_prefix":false}`,
		),
	})
	tests := []struct {
		path, name, upPath string
		status             int
	}{
		{path: "/api/studio/x", name: "a", upPath: "/x", status: 200},
		{path: "/api/studio", name: "a", upPath: "/", status: 200},
		{path: "/api/studio2/x", name: "b", upPath: "/api/studio2/x", status: 200},
		{path: "/api/studiox", status: 404},
		{path: "/api/studio/%2F..%2Fstudio2", status: 400},
		{path: "/api/studio/..%5c..%5cx", status: 400},
		{path: "/health", status: 200},
		{path: "/livez", status: 200},
		{path: "/readyz", status: 200},
		// Ops endpoints are not on the public listener: the paths are
		// routes like any other, and no route matches them here.
		{path: "/stats", status: 404},
		{path: "/metrics", status: 404},
		{path: "/monitor", status: 404},
		{path: "/admin/config", status: 404},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := get(t, gw.URL+tc.path)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("security headers missing on %d", resp.StatusCode)
			}
			if tc.name != "" {
				e := decodeEcho(t, body)
				if e.Name != tc.name || e.Path != tc.upPath {
					t.Errorf("went to %s%s, want %s%s", e.Name, e.Path, tc.name, tc.upPath)
				}
			}
			if tc.status >= 400 {
				var je struct {
					Error     string `json:"error"`
					RequestID string `json:"request_id"`
				}
				if err := json.Unmarshal(body, &je); err != nil || je.RequestID != resp.Header.Get("X-Request-Id") {
					t.Errorf("error body %q is not the gateway's JSON with the request id", body)
				}
			}
		})
	}
	// The public /health says the status and nothing else.
	if _, body := get(t, gw.URL+"/health"); strings.TrimSpace(string(body)) != "{\n  \"status\": \"ok\"\n}" {
		t.Errorf("public /health = %s, want the status only", body)
	}
	resp, body := get(t, gw.OpsURL+"/health")
	var h struct {
		Status string
		Routes []struct {
			Prefix   string
			Backends []struct {
				URL, Breaker string
				Alive        bool
			}
		}
	}
	if err := json.Unmarshal(body, &h); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/health: %d %s", resp.StatusCode, body)
	}
	if h.Status != "ok" || len(h.Routes) != 2 || h.Routes[0].Backends[0].Breaker != "closed" || !h.Routes[0].Backends[0].Alive {
		t.Errorf("/health = %s", body)
	}
	_, metrics := get(t, gw.OpsURL+"/metrics")
	for _, want := range []string{
		`http_requests_total{endpoint="/api/studio",method="GET",status="200"}`,
		`http_requests_total{endpoint="unmatched",method="GET",status="404"}`,
		`http_request_duration_seconds_bucket{endpoint="/api/studio2",method="GET"`,
		"active_connections", "backend_health_status{backend=", "circuit_breaker_trips_total", "upstream_retries_total",
		"upstream_request_duration_seconds_bucket{backend=",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestRetriesGetOnRefusedConnection(t *testing.T) {
	live, _ := serve(t, echoHandler("live"))
	gw := start(t, map[string]string{
		"LOAD_BALANCING_ALGO": "round-robin",
		"SERVICE_ROUTES":      routes(`{"prefix":"/","target_url":"` + deadURL(t) + `,` + live + `"}`),
	})
	for i := range 10 {
		resp, body := get(t, gw.URL+fmt.Sprintf("/r%d", i))
		if resp.StatusCode != 200 || decodeEcho(t, body).Name != "live" {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	_, metrics := get(t, gw.OpsURL+"/metrics")
	if !strings.Contains(string(metrics), "upstream_retries_total ") || strings.Contains(string(metrics), "upstream_retries_total 0\n") {
		t.Errorf("no retries counted")
	}
}

// resetter accepts a request, reads it whole, counts it and resets the
// connection without answering.
func resetter(t *testing.T, deliveries *atomic.Int64) string {
	t.Helper()
	return mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		deliveries.Add(1)
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}))
}

func mustServe(t *testing.T, h http.Handler) string { u, _ := serve(t, h); return u }

func TestPostToResettingBackendIsNotRetried(t *testing.T) {
	var deliveries atomic.Int64
	gw := start(t, map[string]string{
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + resetter(t, &deliveries) + `,` + resetter(t, &deliveries) + `"}`),
	})
	resp, err := client.Post(gw.URL+"/order", "application/json", strings.NewReader(`{"buy":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	if n := deliveries.Load(); n != 1 {
		t.Errorf("backends saw %d deliveries of one POST, want exactly 1", n)
	}
	// A GET to the same pool is retried on the other backend.
	deliveries.Store(0)
	resp, _ = get(t, gw.URL+"/item")
	if n := deliveries.Load(); n < 2 || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET: %d deliveries, status %d; want a retry and 502", n, resp.StatusCode)
	}
}

func TestPutWithSmallBodyIsReplayedOnRetry(t *testing.T) {
	var deliveries atomic.Int64
	var got atomic.Value
	ok := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b))
	}))
	gw := start(t, map[string]string{
		"LOAD_BALANCING_ALGO": "round-robin",
		"SERVICE_ROUTES":      routes(`{"prefix":"/","targets":[{"url":"` + resetter(t, &deliveries) + `"},{"url":"` + ok + `"}]}`),
	})
	for range 2 { // one of the two requests starts on the resetter
		req, _ := http.NewRequest(http.MethodPut, gw.URL+"/doc", strings.NewReader("hello body"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PUT status %d", resp.StatusCode)
		}
		if got.Load() != "hello body" {
			t.Fatalf("backend got body %q", got.Load())
		}
	}
	if deliveries.Load() == 0 {
		t.Error("the resetting backend was never tried: the test proves nothing")
	}
}

func TestSlowBackendTimesOutWith504(t *testing.T) {
	release := make(chan struct{})
	slow := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	gw := start(t, map[string]string{
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + slow + `","timeout_secs":0.3}`),
	})
	t0 := time.Now()
	resp, body := get(t, gw.URL+"/slow")
	d := time.Since(t0)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504: %s", resp.StatusCode, body)
	}
	if d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("answered after %v, want about the route timeout (300ms, all attempts together)", d)
	}
}

func TestBreakerOpensAndHalfOpens(t *testing.T) {
	var healthy atomic.Bool
	var hits atomic.Int64
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	gw := start(t, map[string]string{
		"CIRCUIT_BREAKER_MAX":     "2",
		"CIRCUIT_BREAKER_TIMEOUT": "300ms",
		"RETRY_MAX":               "1",
		// The backend's own 503s count only on a route that opts in.
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `","breaker_on_5xx":true}`),
	})
	for i := range 2 {
		if resp, _ := get(t, gw.URL+"/x"); resp.StatusCode != 503 {
			t.Fatalf("request %d: %d, want the backend's 503", i, resp.StatusCode)
		}
	}
	before := hits.Load()
	resp, body := get(t, gw.URL+"/x")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "no live backend") {
		t.Fatalf("open breaker: %d %q (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if hits.Load() != before {
		t.Error("an open breaker let a request through")
	}
	if _, h := get(t, gw.OpsURL+"/health"); !strings.Contains(string(h), `"breaker": "open"`) || !strings.Contains(string(h), `"degraded"`) {
		t.Errorf("/health does not show the open breaker: %s", h)
	}
	time.Sleep(350 * time.Millisecond)
	healthy.Store(true)
	if _, h := get(t, gw.OpsURL+"/health"); !strings.Contains(string(h), `"breaker": "half-open"`) {
		t.Errorf("/health does not show half-open: %s", h)
	}
	if resp, _ := get(t, gw.URL+"/x"); resp.StatusCode != 200 {
		t.Fatalf("half-open probe: %d", resp.StatusCode)
	}
	if _, h := get(t, gw.OpsURL+"/health"); !strings.Contains(string(h), `"breaker": "closed"`) {
		t.Errorf("breaker did not close after a good probe: %s", h)
	}
	if _, m := get(t, gw.OpsURL+"/metrics"); !strings.Contains(string(m), "circuit_breaker_trips_total 1") {
		t.Errorf("circuit_breaker_trips_total is not 1")
	}
}

// TestNoClientCanEjectAPool: an anonymous client asking for failing or slow
// answers must not make the gateway refuse other clients' requests to
// other paths of the pool. By default only transport failures count; with
// breaker_on_5xx, MAX_EJECTED_PERCENT keeps most of the pool in service.
func TestNoClientCanEjectAPool(t *testing.T) {
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bad":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		case "/reset":
			c, _, _ := w.(http.Hijacker).Hijack()
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		default:
			w.Write([]byte("ok"))
		}
	})
	var pool []string
	for range 4 {
		pool = append(pool, mustServe(t, backend))
	}
	target := strings.Join(pool, ",")
	for _, tc := range []struct {
		name, route string
		attack      []string
		wantOpen    int
	}{
		{name: "503s and timeouts count for nothing by default", route: `"timeout_secs":0.1`,
			attack: []string{"/api/bad", "/api/slow"}, wantOpen: 0},
		{name: "with breaker_on_5xx, at most half the pool goes", route: `"timeout_secs":0.1,"breaker_on_5xx":true`,
			attack: []string{"/api/bad"}, wantOpen: 2},
		{name: "resets count, but at most half the pool goes", route: `"timeout_secs":0.1`,
			attack: []string{"/api/reset"}, wantOpen: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := start(t, map[string]string{
				"CIRCUIT_BREAKER_MAX": "5", "CIRCUIT_BREAKER_TIMEOUT": "30s", "LOAD_BALANCING_ALGO": "round-robin",
				"SERVICE_ROUTES": routes(`{"prefix":"/api","target_url":"`+target+`",`+tc.route+`}`,
					`{"prefix":"/other","target_url":"`+target+`"}`),
			})
			for range 10 {
				for _, p := range tc.attack {
					get(t, gw.URL+p)
				}
			}
			_, h := get(t, gw.OpsURL+"/health")
			if n := strings.Count(string(h), `"breaker": "open"`) / 2; n != tc.wantOpen { // each backend is listed by both routes
				t.Errorf("%d breakers open, want %d:\n%s", n, tc.wantOpen, h)
			}
			for _, p := range []string{"/api/ok", "/other/ok"} {
				for i := range 8 {
					if resp, body := get(t, gw.URL+p); resp.StatusCode != 200 {
						t.Fatalf("%s #%d after the attack: %d %s", p, i, resp.StatusCode, body)
					}
				}
			}
		})
	}
}

func TestClientCannotOpenBreakerWith500s(t *testing.T) {
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	gw := start(t, map[string]string{
		"CIRCUIT_BREAKER_MAX": "2",
		"SERVICE_ROUTES":      routes(`{"prefix":"/","target_url":"` + up + `"}`),
	})
	for range 6 {
		if resp, _ := get(t, gw.URL+"/boom"); resp.StatusCode != 500 {
			t.Fatalf("status %d, want the backend's 500", resp.StatusCode)
		}
	}
	if _, h := get(t, gw.OpsURL+"/health"); !strings.Contains(string(h), `"breaker": "closed"`) {
		t.Errorf("500s opened the breaker: %s", h)
	}
}

func TestBackendStoppedMidRunIsMarkedDeadAndNoRequestFails(t *testing.T) {
	a, stopA := serve(t, echoHandler("a"))
	b, _ := serve(t, echoHandler("b"))
	gw := start(t, map[string]string{
		"HEALTH_CHECK_INTERVAL": "50ms",
		"LOAD_BALANCING_ALGO":   "round-robin",
		"SERVICE_ROUTES":        routes(`{"prefix":"/","target_url":"` + a + `,` + b + `"}`),
	})
	var failures atomic.Int64
	var wg sync.WaitGroup
	stopLoad := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				resp, err := client.Get(gw.URL + "/x")
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	stopA()
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, h := get(t, gw.OpsURL+"/health")
		if strings.Contains(string(h), `"alive": false`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stopped backend not marked dead: %s", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(stopLoad)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d client requests failed while a backend died", n)
	}
	if _, m := get(t, gw.OpsURL+"/metrics"); !strings.Contains(string(m), `backend_health_status{backend="`+a+`"} 0`) {
		t.Errorf("backend_health_status of the dead backend is not 0")
	}
}

func TestBodyLimits(t *testing.T) {
	var hits atomic.Int64
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
	}))
	gw := start(t, map[string]string{
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `","max_body_bytes":100}`),
	})
	// Declared too large: 413 at once, nothing forwarded, connection closed.
	out, closed := rawRequest(t, gw.Addr, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n", 2*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 413") || !closed {
		t.Errorf("declared large body: %q closed=%v", firstLine(out), closed)
	}
	if !strings.Contains(out, "X-Content-Type-Options: nosniff") || !strings.Contains(out, "Referrer-Policy: no-referrer") {
		t.Errorf("413 without the security headers: %q", out)
	}
	if hits.Load() != 0 {
		t.Errorf("a declared-too-large body reached the backend")
	}
	// Chunked and growing past the limit: 413.
	chunk := strings.Repeat("a", 150)
	out, closed = rawRequest(t, gw.Addr, fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk), 2*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 413") || !closed {
		t.Errorf("chunked large body: %q closed=%v", firstLine(out), closed)
	}
	// Within the limit: forwarded.
	resp, err := client.Post(gw.URL+"/up", "text/plain", strings.NewReader("small"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("small body: %v %v", err, resp)
	}
	if _, h := get(t, gw.OpsURL+"/health"); !strings.Contains(string(h), `"breaker": "closed"`) {
		t.Errorf("client body faults touched the breaker: %s", h)
	}
}

func TestStalledBodyGets408(t *testing.T) {
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	gw := start(t, map[string]string{
		"BODY_READ_TIMEOUT": "300ms",
		"SERVICE_ROUTES":    routes(`{"prefix":"/","target_url":"` + up + `"}`),
	})
	c, err := net.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly-a-little")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
	if _, h := get(t, gw.OpsURL+"/health"); !strings.Contains(string(h), `"breaker": "closed"`) {
		t.Errorf("a stalled client touched the breaker: %s", h)
	}
}

func TestNoLiveBackendIs503(t *testing.T) {
	gw := start(t, map[string]string{
		"HEALTH_CHECK_INTERVAL": "30ms",
		"HEALTH_CHECK_FALLS":    "1",
		"SERVICE_ROUTES":        routes(`{"prefix":"/","target_url":"` + deadURL(t) + `"}`),
	})
	deadline := time.Now().Add(3 * time.Second)
	for {
		resp, body := get(t, gw.URL+"/x")
		if resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "" {
			break
		}
		if resp.StatusCode != 502 || time.Now().After(deadline) {
			t.Fatalf("status %d %s, want 502 until the check marks it dead, then 503", resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\r'); i >= 0 {
		return s[:i]
	}
	return s
}
