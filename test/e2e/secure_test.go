package e2e

// The attacks a gateway started with nothing configured but routes must
// stop, each played on the wire against the built binary.

import (
	"bufio"
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

// do sends one request with headers (name, value pairs) and returns the
// answer with its body read.
func do(t *testing.T, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// raw writes a request on a fresh connection and returns what came back
// until the gateway closed the connection (closed) or the wait ran out.
func raw(t *testing.T, addr, req string, wait time.Duration) (out string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, req)
	c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c)
	return string(b), err == nil
}

// Per-user answers are never served to strangers, and no client can
// replace what the cache holds.
func TestSecureDefaultCacheServesNoStrangerAnything(t *testing.T) {
	var hits atomic.Int64
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		switch r.URL.Path {
		case "/expires0":
			w.Header().Set("Expires", "0")
		case "/public":
			w.Header().Set("Cache-Control", "max-age=60")
		}
		// An upstream that answers per user by a header of its own, and
		// reflects another it should not.
		fmt.Fprintf(w, "n=%d user=%s orig=%s", n, r.Header.Get("X-Auth-Token"), r.Header.Get("X-Original-Url"))
	})
	p := startGateway(t, `SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`"}]`)

	if _, body := do(t, "GET", p.url("/me"), "X-Auth-Token", "victim"); !strings.Contains(body, "user=victim") {
		t.Fatalf("victim's own answer: %q", body)
	}
	if resp, body := do(t, "GET", p.url("/me")); strings.Contains(body, "victim") || resp.Header.Get("X-Cache") == "HIT" {
		t.Errorf("a stranger got the victim's answer: X-Cache %s %q", resp.Header.Get("X-Cache"), body)
	}
	do(t, "GET", p.url("/expires0"))
	if resp, _ := do(t, "GET", p.url("/expires0")); resp.Header.Get("X-Cache") == "HIT" {
		t.Error("an answer with Expires: 0 was stored")
	}
	_, good := do(t, "GET", p.url("/public"))
	if resp, body := do(t, "GET", p.url("/public"), "Cache-Control", "no-cache", "X-Original-URL", "/evil<script>"); resp.Header.Get("X-Cache") != "HIT" || body != good {
		t.Errorf("a client's no-cache replaced the entry: X-Cache %s %q", resp.Header.Get("X-Cache"), body)
	}
	if _, body := do(t, "GET", p.url("/public")); strings.Contains(body, "evil") {
		t.Errorf("the cache was poisoned: %q", body)
	}
}

// One anonymous client asking for 503s and slow answers does not make the
// gateway refuse everyone else's requests to the pool.
func TestSecureDefaultNoClientEjectsAPool(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bad":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/slow":
			time.Sleep(400 * time.Millisecond)
		default:
			io.WriteString(w, "ok")
		}
	}
	a, b := backend(t, h), backend(t, h)
	p := startGateway(t, `SERVICE_ROUTES=[{"prefix":"/api","target_url":"`+a+","+b+`","timeout_secs":0.2},{"prefix":"/other","target_url":"`+a+","+b+`"}]`)
	for range 5 {
		do(t, "GET", p.url("/api/bad"))
		do(t, "GET", p.url("/api/slow"))
	}
	for _, path := range []string{"/api/ok", "/other/ok", "/api/ok", "/other/ok"} {
		if code, body := get(t, p.url(path)); code != 200 {
			t.Errorf("%s after the attack: %d %s", path, code, body)
		}
	}
	if _, h := get(t, p.opsURL("/health")); strings.Contains(h, `"breaker": "open"`) {
		t.Errorf("a breaker opened:\n%s", h)
	}
}

// Two headers do not get a request past MAX_INFLIGHT, and an idle tunnel is
// closed.
func TestSecureDefaultUpgradeHeadersDoNotSkipTheInflightCap(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	arrived := make(chan struct{}, 4)
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	})
	ws := backend(t, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw)
	})
	p := startGateway(t, "MAX_INFLIGHT=1", "TUNNEL_IDLE_TIMEOUT=500ms",
		`SERVICE_ROUTES=[{"prefix":"/slow","target_url":"`+slow+`"},{"prefix":"/ws","target_url":"`+ws+`"}]`)
	upgrade := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	held, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	io.WriteString(held, "GET /slow/a HTTP/1.1\r\nHost: x\r\n"+upgrade)
	<-arrived
	if out, _ := raw(t, p.addr, "GET /slow/b HTTP/1.1\r\nHost: x\r\n"+upgrade, 2*time.Second); !strings.HasPrefix(out, "HTTP/1.1 503") {
		t.Errorf("a second never-upgraded handshake beyond MAX_INFLIGHT=1: %q", firstLine(out))
	}
	free()
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(held), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the held handshake, once answered: %v %v", err, resp) // its place is free again
	}

	// The held request's place is freed as its handler returns, a moment
	// after its answer went out: a 503 here is that moment.
	var br *bufio.Reader
	for deadline := time.Now().Add(3 * time.Second); ; {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /ws/chat HTTP/1.1\r\nHost: x\r\n"+upgrade)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br = bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err == nil && resp.StatusCode == 101 {
			break
		}
		if err != nil || resp.StatusCode != 503 || time.Now().After(deadline) {
			t.Fatalf("upgrade: %v %v", err, resp)
		}
		time.Sleep(20 * time.Millisecond)
	}
	began := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle tunnel: %v, want it closed", err)
	}
	if d := time.Since(began); d < 400*time.Millisecond || d > 3*time.Second {
		t.Errorf("idle tunnel closed after %v, want about TUNNEL_IDLE_TIMEOUT (500ms)", d)
	}
}

// Nothing about the gateway's insides is on the public port.
func TestSecureDefaultOpsDataStaysOffThePublicPort(t *testing.T) {
	p := startGateway(t, "OPS_ADDR=", "REDIS_ADDR=127.0.0.1:1") // the default OPS_ADDR
	if p.ops != "127.0.0.1:9778" {
		t.Errorf("ops listener on %q, want the default 127.0.0.1:9778", p.ops)
	}
	for _, path := range []string{"/metrics", "/stats", "/monitor", "/api/system-metrics", "/admin/config", "/admin/blocked"} {
		if code, body := get(t, p.url(path)); code != http.StatusNotFound || strings.Contains(body, "go_goroutines") {
			t.Errorf("public %s: %d %.80q", path, code, body)
		}
		if code, _ := get(t, p.opsURL(path)); code == http.StatusNotFound {
			t.Errorf("ops %s: 404", path)
		}
	}
	code, body := get(t, p.url("/health"))
	if code != 200 || strings.TrimSpace(body) != "{\n  \"status\": \"ok\"\n}" {
		t.Errorf("public /health: %d %s", code, body)
	}
	if _, body := get(t, p.opsURL("/health")); !strings.Contains(body, "localhost:3000") {
		t.Errorf("ops /health lacks the backends: %s", body)
	}
}

// A local process, or a client behind a proxy that sends no usable
// X-Forwarded-For, is rate-limited like anyone.
func TestSecureDefaultLoopbackIsRateLimited(t *testing.T) {
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {})
	for _, tc := range []struct {
		name string
		env  []string
		hdr  []string
	}{
		{name: "local process, TRUSTED_PROXIES unset"},
		{name: "trusted proxy sending junk", env: []string{"TRUSTED_PROXIES=127.0.0.1"}, hdr: []string{"X-Forwarded-For", "unknown"}},
		{name: "trusted proxy sending nothing", env: []string{"TRUSTED_PROXIES=127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startGateway(t, append(tc.env, "MAX_REQUESTS_PER_SECOND=1", "MAX_BURST_SIZE=3",
				`SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`"}]`)...)
			codes := make([]int, 5)
			for i := range codes {
				resp, _ := do(t, "GET", p.url("/x"), tc.hdr...)
				codes[i] = resp.StatusCode
			}
			if codes[3] != http.StatusTooManyRequests || codes[4] != http.StatusTooManyRequests {
				t.Errorf("statuses %v, want 429 past the burst of 3", codes)
			}
		})
	}
}

// Smaller holes: framing, methods, dribbled bodies, upstream identity
// headers, CORS.
func TestSecureDefaultSmallerHoles(t *testing.T) {
	var hits atomic.Int64
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Server", "Apache/2.4.1 (Unix)")
		w.Header().Set("X-Powered-By", "PHP/5.3.3")
		w.Header().Set("Access-Control-Allow-Origin", "*")
	})
	p := startGateway(t, `SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`","timeout_secs":0.5},{"prefix":"/ro","target_url":"`+up+`","methods":["GET"]}]`)

	out, closed := raw(t, p.addr, "GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"27\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n", 3*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.0 400") || !closed || strings.Count("\n"+out, "\nHTTP/1.") != 1 {
		t.Errorf("HTTP/1.0 with Transfer-Encoding: closed %v\n%s", closed, out)
	}
	for _, m := range []string{"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n", "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n"} {
		if out, _ := raw(t, p.addr, m, 3*time.Second); !strings.HasPrefix(out, "HTTP/1.1 405") {
			t.Errorf("%q: %q", firstLine(m), firstLine(out))
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the backend saw %d of the refused requests", hits.Load())
	}
	if resp, _ := do(t, "DELETE", p.url("/ro/x")); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("DELETE on a GET-only route: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	// A body dribbled a byte every 100 ms for a second: the backend hears
	// nothing until it is whole, and the route timeout (0.5 s) never fires.
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		if hits.Load() != 0 {
			t.Fatal("the backend got the request before its body")
		}
		io.WriteString(c, "a")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 || hits.Load() != 1 {
		t.Fatalf("dribbled body: %v %v, backend saw %d", err, resp, hits.Load())
	}
	for _, h := range []string{"Server", "X-Powered-By"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("the upstream's %s reached the client: %q", h, v)
		}
	}
	if resp, _ := do(t, "GET", p.url("/x"), "Origin", "https://evil.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS with no origins configured: Access-Control-Allow-Origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}
