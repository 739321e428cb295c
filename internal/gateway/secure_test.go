package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
)

// TestUpgradeRequestsCountAgainstInflightUntil101: a full WebSocket
// handshake to an upstream that never upgrades holds an in-flight place
// like any request, so two headers are no way around MAX_INFLIGHT; once
// the upstream answers 101 the tunnel gives its place back.
func TestUpgradeRequestsCountAgainstInflightUntil101(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(release) }) }
	defer stop()
	arrived := make(chan struct{}, 8)
	slow := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	gw := start(t, map[string]string{
		"MAX_INFLIGHT":   "1",
		"SERVICE_ROUTES": routes(`{"prefix":"/slow","target_url":"`+slow+`"}`, `{"prefix":"/ws","target_url":"`+wsEcho(t)+`"}`),
	})
	ws := []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version", "13"}
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/slow/x", nil)
		for i := 0; i+1 < len(ws); i += 2 {
			req.Header.Set(ws[i], ws[i+1])
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-arrived // the handshake holds the one place
	if resp, _ := get(t, gw.URL+"/slow/y", ws...); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a second handshake while one that never upgraded is in flight: %d, want 503", resp.StatusCode)
	}
	stop()
	<-answered
	// Its place is given back as its handler returns, a moment after the
	// answer went out.
	waitFor(t, func() bool { return inflight(t, gw) == 0 })

	// An upgraded tunnel gives its place back at the 101.
	c, br := openWebSocket(t, gw.Addr, "/ws/chat")
	for i := range 3 {
		if resp, body := get(t, gw.URL+"/slow/z"); resp.StatusCode != 200 {
			t.Fatalf("request %d beside an open tunnel: %d %s", i, resp.StatusCode, body)
		}
	}
	if err := wsRoundTrip(c, br, "still there"); err != nil {
		t.Fatal(err)
	}
}

// TestIdleTunnelIsClosed: a tunnel with no byte either way for
// TUNNEL_IDLE_TIMEOUT is closed; one with traffic in a single direction
// stays open.
func TestIdleTunnelIsClosed(t *testing.T) {
	gw := start(t, map[string]string{
		"TUNNEL_IDLE_TIMEOUT": "300ms",
		"SERVICE_ROUTES":      routes(`{"prefix":"/ws","target_url":"` + wsEcho(t) + `"}`),
	})
	busy, busyR := openWebSocket(t, gw.Addr, "/ws/busy")
	idle, idleR := openWebSocket(t, gw.Addr, "/ws/idle")
	if err := wsRoundTrip(idle, idleR, "hello"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < 900*time.Millisecond {
		if err := wsRoundTrip(busy, busyR, "tick"); err != nil {
			t.Fatalf("a busy tunnel was cut after %v: %v", time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := idleR.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle tunnel after 900ms: read %d, %v; want it closed", n, err)
	}
	if _, m := get(t, gw.OpsURL+"/metrics"); !strings.Contains(string(m), "tunnel_idle_timeouts_total 1") {
		t.Error("tunnel_idle_timeouts_total is not 1")
	}
	if !strings.Contains(gw.Logs.String(), `"msg":"tunnel closed: idle"`) {
		t.Error("no log line for the idle tunnel")
	}
}

// TestHTTP10WithTransferEncodingIsRefused: net/http ignores
// Transfer-Encoding on HTTP/1.0 and would read the chunked body as the next
// request on a kept-alive connection. The gateway answers 400 and closes,
// and nothing reaches the backend.
func TestHTTP10WithTransferEncodingIsRefused(t *testing.T) {
	var hits atomic.Int64
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	gw := start(t, map[string]string{"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `"}`)})
	for _, raw := range []string{
		"GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"2a\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
		"POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\ntransfer-encoding: chunked\r\nContent-Length: 3\r\n\r\nabcGET /smuggled HTTP/1.0\r\n\r\n",
	} {
		out, closed := rawRequest(t, gw.Addr, raw, 2*time.Second)
		if !strings.HasPrefix(out, "HTTP/1.0 400") || !closed || strings.Count("\n"+out, "\nHTTP/1.") != 1 {
			t.Errorf("%q:\n%s (closed %v)", firstLine(raw), out, closed)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the backend saw %d requests", hits.Load())
	}
	// HTTP/1.0 without it is served as before.
	if out, _ := rawRequest(t, gw.Addr, "GET /ok HTTP/1.0\r\nHost: x\r\n\r\n", 2*time.Second); !strings.HasPrefix(out, "HTTP/1.0 200") {
		t.Errorf("plain HTTP/1.0: %q", firstLine(out))
	}
}

// TestConnectAndTraceAre405: CONNECT would open a tunnel past routing, TRACE
// reflects credentials back to scripts; neither reaches a backend.
func TestConnectAndTraceAre405(t *testing.T) {
	var hits atomic.Int64
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	gw := start(t, map[string]string{"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `"}`)})
	for _, raw := range []string{
		"CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n",
		"TRACE / HTTP/1.1\r\nHost: x\r\nCookie: session=secret\r\n\r\n",
	} {
		out, _ := rawRequest(t, gw.Addr, raw, 2*time.Second)
		if !strings.HasPrefix(out, "HTTP/1.1 405") || !strings.Contains(out, "\r\nAllow: GET, HEAD, POST") || strings.Contains(out, "secret") {
			t.Errorf("%q:\n%s", firstLine(raw), out)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the backend saw %d requests", hits.Load())
	}
}

// TestDribbledBodyHoldsNoBackendConnection: a body up to
// REQUEST_BUFFER_BYTES is read whole before a backend is chosen, so a
// client sending it a byte at a time holds no backend connection and does
// not run down the route timeout; the backend gets it in one piece.
func TestDribbledBodyHoldsNoBackendConnection(t *testing.T) {
	var requests atomic.Int64
	var got atomic.Value
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1) // as soon as the request's head arrives
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b) + " cl=" + strconv.FormatInt(r.ContentLength, 10))
	}))
	gw := start(t, map[string]string{
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `","timeout_secs":0.3}`),
	})
	for _, tc := range []struct{ name, head, chunk, last string }{
		{name: "Content-Length", head: "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n", chunk: "a", last: ""},
		{name: "chunked", head: "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", chunk: "1\r\na\r\n", last: "0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requests.Store(0)
			c, err := net.Dial("tcp", gw.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.head)
			for range 8 { // 0.8 s: well past the route timeout
				time.Sleep(100 * time.Millisecond)
				if n := requests.Load(); n != 0 {
					t.Fatalf("the backend got the request while the body was still coming (%d)", n)
				}
				io.WriteString(c, tc.chunk)
			}
			io.WriteString(c, tc.last)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || requests.Load() != 1 || got.Load() != "aaaaaaaa cl=8" {
				t.Errorf("%d, backend saw %d requests, body %q", resp.StatusCode, requests.Load(), got.Load())
			}
		})
	}
}

// TestUpstreamKeepaliveOff: a route with upstream_keepalive false sends
// each request on a fresh upstream connection, asking it to close.
func TestUpstreamKeepaliveOff(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]map[string]bool{} // route → client ports the backend saw
	var closeHdr atomic.Value
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		route := strings.Split(r.URL.Path, "/")[1]
		if seen[route] == nil {
			seen[route] = map[string]bool{}
		}
		seen[route][r.RemoteAddr] = true
		mu.Unlock()
		if route == "fresh" {
			closeHdr.Store(fmt.Sprint(r.Close))
		}
	}))
	gw := start(t, map[string]string{
		"SERVICE_ROUTES": routes(`{"prefix":"/fresh","target_url":"`+up+`","upstream_keepalive":false,"strip_prefix":false}`,
			`{"prefix":"/kept","target_url":"`+up+`","strip_prefix":false}`),
	})
	for range 5 {
		get(t, gw.URL+"/kept/x")
		if resp, _ := get(t, gw.URL+"/fresh/x"); resp.StatusCode != 200 {
			t.Fatalf("%d", resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen["kept"]) != 1 || len(seen["fresh"]) != 5 || closeHdr.Load() != "true" {
		t.Errorf("kept route: %d connections (want 1); fresh route: %d for 5 requests (want 5), Connection: close %v",
			len(seen["kept"]), len(seen["fresh"]), closeHdr.Load())
	}
}

// TestUpstreamIdentityHeadersHidden: HIDE_UPSTREAM_HEADERS (default Server,
// X-Powered-By, X-AspNet-Version) never reach the client; set empty, they do.
func TestUpstreamIdentityHeadersHidden(t *testing.T) {
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "Apache/2.4.1 (Unix)")
		w.Header().Set("X-Powered-By", "PHP/5.3.3")
		w.Header().Set("X-AspNet-Version", "4.0.30319")
		w.Header().Set("X-Kept", "yes")
	}))
	for _, tc := range []struct {
		name string
		env  map[string]string
		hide bool
	}{
		{name: "default", env: map[string]string{}, hide: true},
		{name: "set empty keeps all", env: map[string]string{"HIDE_UPSTREAM_HEADERS": " "}, hide: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["SERVICE_ROUTES"] = routes(`{"prefix":"/","target_url":"` + up + `"}`)
			gw := start(t, tc.env)
			resp, _ := get(t, gw.URL+"/x")
			for _, h := range []string{"Server", "X-Powered-By", "X-Aspnet-Version"} {
				if (resp.Header.Get(h) == "") != tc.hide {
					t.Errorf("%s: %q", h, resp.Header.Get(h))
				}
			}
			if resp.Header.Get("X-Kept") != "yes" {
				t.Error("an ordinary header was removed")
			}
		})
	}
}

// TestRouteMethods: a route's methods list answers others 405 with Allow;
// HEAD comes with GET; a CORS preflight is still the CORS step's.
func TestRouteMethods(t *testing.T) {
	var hits atomic.Int64
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	gw := start(t, map[string]string{
		"CORS_ALLOWED_ORIGINS": `["https://app.example"]`,
		"SERVICE_ROUTES":       routes(`{"prefix":"/ro","target_url":"` + up + `","methods":["GET"]}`),
	})
	do := func(method string, hdr ...string) *http.Response {
		req, _ := http.NewRequest(method, gw.URL+"/ro/x", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, m := range []string{"GET", "HEAD"} {
		if resp := do(m); resp.StatusCode != 200 {
			t.Errorf("%s: %d", m, resp.StatusCode)
		}
	}
	for _, m := range []string{"POST", "DELETE", "PROPFIND"} {
		if resp := do(m); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d Allow %q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if resp := do("OPTIONS", "Origin", "https://app.example", "Access-Control-Request-Method", "GET"); resp.StatusCode != http.StatusNoContent ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if hits.Load() != 2 {
		t.Errorf("the backend saw %d requests, want the GET and the HEAD", hits.Load())
	}
}

// inflight reads the inflight_requests gauge.
func inflight(t *testing.T, gw *running) float64 {
	return testutil.MetricValue(t, gw.G.metrics.Registry, "inflight_requests")
}

// waitFor polls cond for up to 3 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
	}
}
