package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// securityHeadersOn fails when a gateway answer lacks the security headers.
func securityHeadersOn(t *testing.T, resp *http.Response) {
	t.Helper()
	for _, h := range []string{"X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("%d answer lacks %s", resp.StatusCode, h)
		}
	}
}

// The test client (127.0.0.1) is untrusted in these tests, so its own
// address is what every per-IP step sees.
const untrusted = "10.99.99.99/32"

func TestDenyListAndSpoofing(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{
		"TRUSTED_PROXIES": untrusted,
		"IP_BLACKLIST":    "127.0.0.0/24",
		"SERVICE_ROUTES":  routes(`{"prefix":"/","target_url":"` + up + `"}`),
	})
	resp, body := get(t, gw.URL+"/x", "X-Forwarded-For", "198.51.100.1", "X-Real-IP", "198.51.100.1")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("deny-listed client with a spoofed XFF: %d %s", resp.StatusCode, body)
	}
	securityHeadersOn(t, resp)
	if !strings.Contains(string(body), `"request_id"`) {
		t.Errorf("403 body is not the gateway's JSON: %s", body)
	}
}

func TestAllowListWinsOverDenyAndLimits(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{
		"TRUSTED_PROXIES":         untrusted,
		"IP_BLACKLIST":            "127.0.0.0/8",
		"IP_WHITELIST":            "127.0.0.1",
		"MAX_REQUESTS_PER_SECOND": "1",
		"MAX_BURST_SIZE":          "1",
		"SERVICE_ROUTES":          routes(`{"prefix":"/","target_url":"` + up + `"}`),
	})
	for i := range 5 {
		if resp, _ := get(t, gw.URL+"/x"); resp.StatusCode != 200 {
			t.Fatalf("allow-listed request %d: %d", i, resp.StatusCode)
		}
	}
}

func TestRateLimitThroughTheGateway(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{
		"TRUSTED_PROXIES":         untrusted,
		"MAX_REQUESTS_PER_SECOND": "0.5",
		"MAX_BURST_SIZE":          "3",
		"SERVICE_ROUTES":          routes(`{"prefix":"/","target_url":"` + up + `"}`),
	})
	for i := range 3 {
		// Spoofed forwarding headers from an untrusted client change nothing.
		resp, _ := get(t, gw.URL+"/x", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		if resp.StatusCode != 200 || resp.Header.Get("RateLimit-Limit") != "3" {
			t.Fatalf("request %d within the burst: %d RateLimit-Limit %q", i, resp.StatusCode, resp.Header.Get("RateLimit-Limit"))
		}
	}
	resp, _ := get(t, gw.URL+"/x", "X-Forwarded-For", "198.51.100.99")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || resp.Header.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("over the burst: %d Retry-After %q Remaining %q", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("RateLimit-Remaining"))
	}
	securityHeadersOn(t, resp)
	// The per-IP limit covers the gateway's own public endpoints too.
	if resp, _ := get(t, gw.URL+"/health"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a limited client reached /health: %d", resp.StatusCode)
	}
}

// freeAddr returns a loopback address nothing listens on yet.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("%s not listening", addr)
}

func adminDo(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDDoSBlockAndAdminUnblockOnOpsListener(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	ops := freeAddr(t)
	const token = "test-admin-token-0123456789abcdef"
	gw := start(t, map[string]string{
		"TRUSTED_PROXIES":         untrusted,
		"OPS_ADDR":                ops,
		"DDOS_THRESHOLD":          "5",
		"BLOCK_DURATION":          "1h",
		"MAX_REQUESTS_PER_SECOND": "1000",
		"MAX_BURST_SIZE":          "1000",
		"ADMIN_TOKEN":             token,
		"SERVICE_ROUTES":          routes(`{"prefix":"/api","target_url":"` + up + `"}`),
	})
	waitListening(t, ops)
	var last *http.Response
	for range 6 {
		last, _ = get(t, gw.URL+"/api/x")
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" {
		t.Fatalf("6th request over a threshold of 5: %d", last.StatusCode)
	}
	securityHeadersOn(t, last)
	if resp, _ := get(t, gw.URL+"/health"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a blocked client reached /health: %d", resp.StatusCode)
	}
	// The ops listener carries no client limits: the operator can act.
	if code, _ := adminDo(t, "GET", "http://"+ops+"/admin/blocked", ""); code != http.StatusUnauthorized {
		t.Errorf("admin without token: %d, want 401", code)
	}
	if code, _ := adminDo(t, "GET", "http://"+ops+"/admin/blocked", "wrong-token-wrong-token-wrong-tok"); code != http.StatusUnauthorized {
		t.Errorf("admin with a wrong token: %d, want 401", code)
	}
	code, body := adminDo(t, "GET", "http://"+ops+"/admin/blocked", token)
	if code != 200 || !strings.Contains(body, `"127.0.0.1"`) {
		t.Fatalf("GET /admin/blocked: %d %s", code, body)
	}
	_, st := get(t, "http://"+ops+"/stats")
	var stats struct {
		BlockedIPs int `json:"blocked_ips"`
	}
	if json.Unmarshal(st, &stats); stats.BlockedIPs != 1 {
		t.Errorf("/stats blocked_ips = %d, want 1", stats.BlockedIPs)
	}
	if code, body := adminDo(t, "DELETE", "http://"+ops+"/admin/blocked?ip=127.0.0.1", token); code != 200 {
		t.Fatalf("DELETE /admin/blocked: %d %s", code, body)
	}
	if resp, _ := get(t, gw.URL+"/api/x"); resp.StatusCode != 200 {
		t.Errorf("unblocked client still refused: %d", resp.StatusCode)
	}
	_, m := get(t, "http://"+ops+"/metrics")
	if !strings.Contains(string(m), "blocked_ips_total 1") {
		t.Error("blocked_ips_total is not 1")
	}
	// Deny-listing through the admin API applies at once; the admin API
	// refuses to deny-list a trusted proxy's range.
	if code, _ := adminDo(t, "POST", "http://"+ops+"/admin/blacklist?ip=127.0.0.1", token); code != http.StatusBadRequest {
		t.Errorf("deny-listing the caller's own address: %d, want 400", code)
	}
	if code, body := adminDo(t, "POST", "http://"+ops+"/admin/blacklist?ip=127.0.0.2", token); code != 200 {
		t.Fatalf("POST /admin/blacklist: %d %s", code, body)
	}
	from2 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
	}}
	resp, err := from2.Get(gw.URL + "/api/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("deny-listed at runtime, still served: %d", resp.StatusCode)
	}
	if resp, _ := get(t, gw.URL+"/api/x"); resp.StatusCode != 200 {
		t.Errorf("a neighbour of the denied address refused: %d", resp.StatusCode)
	}
	if code, _ := adminDo(t, "POST", "http://"+ops+"/admin/blacklist?ip=10.99.99.0/24", token); code != http.StatusBadRequest {
		t.Errorf("deny-listing a trusted proxy's range: %d, want 400", code)
	}
	if code, _ := adminDo(t, "POST", "http://"+ops+"/admin/whitelist?ip=0.0.0.0/0", token); code != http.StatusBadRequest {
		t.Errorf("allow-listing /0: %d, want 400", code)
	}
}

func TestAdminOffWithoutToken(t *testing.T) {
	gw := start(t, map[string]string{"SERVICE_ROUTES": routes(`{"prefix":"/api","target_url":"` + deadURL(t) + `"}`)})
	for _, p := range []string{"/admin/whitelist", "/admin/blacklist", "/admin/blocked"} {
		if code, _ := adminDo(t, "GET", gw.OpsURL+p, "anything"); code != http.StatusForbidden {
			t.Errorf("%s with ADMIN_TOKEN unset: %d, want 403", p, code)
		}
	}
}

func TestConnectionCapPerIP(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{
		"TRUSTED_PROXIES":  untrusted,
		"MAX_CONNS_PER_IP": "2",
		"SERVICE_ROUTES":   routes(`{"prefix":"/","target_url":"` + up + `"}`),
	})
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", gw.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	time.Sleep(50 * time.Millisecond) // let the server accept both
	// The third is accepted and reset at once; the reset may already show
	// on connect.
	if third, err := net.Dial("tcp", gw.Addr); err == nil {
		defer third.Close()
		io.WriteString(third, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
		third.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := third.Read(make([]byte, 64)); err == nil {
			t.Errorf("third connection from one IP was served (%d bytes)", n)
		}
	}
	// The first two still work.
	io.WriteString(conns[0], "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	conns[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if b, _ := io.ReadAll(conns[0]); !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Errorf("capped client lost its admitted connection: %q", firstLine(string(b)))
	}
}

func TestSlowHeadersAreCut(t *testing.T) {
	env := map[string]string{"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + deadURL(t) + `"}`)}
	gw := startWith(t, env, func(g *Gateway) { g.readHeaderTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\n")
	// Dribble a header byte every 100ms: each one arrives in time, but the
	// header block never ends. The connection must be cut at the deadline.
	closed := make(chan time.Duration, 1)
	go func() {
		io.ReadAll(c)
		closed <- time.Since(start)
	}()
	for i := 0; i < 30; i++ {
		select {
		case d := <-closed:
			if d > 2*time.Second {
				t.Errorf("slowloris connection lived %v", d)
			}
			return
		case <-time.After(100 * time.Millisecond):
			if _, err := c.Write([]byte("X")); err != nil {
				return // closed by the server
			}
		}
	}
	t.Error("a connection dribbling headers for 3s was never cut")
}

func TestLoadSheddingSparesHealth(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(release) }) }
	defer stop()
	slow := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	gw := start(t, map[string]string{
		"MAX_INFLIGHT":   "1",
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + slow + `"}`),
	})
	done := make(chan int, 1)
	go func() {
		resp, err := client.Get(gw.URL + "/slow")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	resp, _ := get(t, gw.URL+"/second")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("beyond MAX_INFLIGHT: %d, want 503 with Retry-After", resp.StatusCode)
	}
	if resp, _ := get(t, gw.URL+"/health"); resp.StatusCode != 200 {
		t.Errorf("/health shed: %d", resp.StatusCode)
	}
	stop()
	if code := <-done; code != 200 {
		t.Errorf("the in-flight request: %d", code)
	}
}

func TestCORSPreflightAnsweredByGateway(t *testing.T) {
	var upstreamHits int64
	var mu sync.Mutex
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamHits++
		mu.Unlock()
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Write([]byte("ok"))
	}))
	gw := start(t, map[string]string{
		"CORS_ALLOWED_ORIGINS": `["https://app.example"]`,
		"SERVICE_ROUTES":       routes(`{"prefix":"/api","target_url":"` + up + `"}`),
	})
	req, _ := http.NewRequest(http.MethodOptions, gw.URL+"/api/x", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("preflight: %d ACAO %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	securityHeadersOn(t, resp)
	mu.Lock()
	if upstreamHits != 0 {
		t.Error("preflight forwarded upstream")
	}
	mu.Unlock()
	resp, _ = get(t, gw.URL+"/api/x", "Origin", "https://evil.example")
	if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 0 {
		t.Errorf("disallowed origin got ACAO %q (the upstream's * must not leak through)", v)
	}
	if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
		t.Error("no Vary: Origin")
	}
	resp, _ = get(t, gw.URL+"/api/x", "Origin", "https://app.example")
	if v := resp.Header.Values("Access-Control-Allow-Origin"); len(v) != 1 || v[0] != "https://app.example" {
		t.Errorf("allowed origin: ACAO %q, want exactly the origin once", v)
	}
}
