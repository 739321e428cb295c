package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/testsvc"
)

// origin is a test upstream whose answers are shaped by the query: cc
// (Cache-Control), vary, status, cookie, ct (Content-Type), etag, sleep
// (ms). Its body names how many requests it has served, so a test can tell
// a stored answer from a fresh one.
type origin struct {
	hits atomic.Int64
	URL  string
}

func newOrigin(t *testing.T) *origin {
	o := &origin{}
	o.URL, _ = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := o.hits.Add(1)
		q := r.URL.Query()
		if ms, _ := strconv.Atoi(q.Get("sleep")); ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		for k, h := range map[string]string{"cc": "Cache-Control", "vary": "Vary", "etag": "Etag", "ct": "Content-Type"} {
			if v := q.Get(k); v != "" {
				w.Header().Set(h, v)
			}
		}
		if q.Get("cookie") != "" {
			w.Header().Set("Set-Cookie", "session=secret")
		}
		if q.Get("echoid") != "" { // as many upstreams do
			w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
		}
		if v := q.Get("expires"); v != "" {
			w.Header().Set("Expires", v)
		}

		status := http.StatusOK
		if s := q.Get("status"); s != "" {
			status, _ = strconv.Atoi(s)
		}
		w.WriteHeader(status)
		if q.Get("flush") != "" { // chunked: a HEAD gets no Content-Length
			w.(http.Flusher).Flush()
		}
		if h := q.Get("reflect"); h != "" { // an upstream that trusts an unkeyed header
			fmt.Fprintf(w, "[%s=%s] ", h, r.Header.Get(h))
		}
		fmt.Fprintf(w, "answer %d for %s %s lang=%s", n, r.Method, r.URL.RequestURI(), r.Header.Get("Accept-Language"))
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			fmt.Fprintf(w, " body=%s", b)
		}
	}))
	return o
}

func cacheEnv(o *origin, extra ...string) map[string]string {
	env := map[string]string{
		"ENABLE_CACHING": "true",
		"SERVICE_ROUTES": routes(
			`{"prefix":"/c","target_url":"`+o.URL+`"}`,
			`{"prefix":"/short","target_url":"`+o.URL+`","cache_ttl_secs":1}`,
			`{"prefix":"/off","target_url":"`+o.URL+`","cache_ttl_secs":0}`,
			`{"prefix":"/shared","target_url":"`+o.URL+`","cache_authenticated":true}`),
		"MAX_REQUESTS_PER_SECOND": "10000", "MAX_BURST_SIZE": "10000", "DDOS_THRESHOLD": "1000000",
		"TRUSTED_PROXIES": untrusted,
		// The operator vouches for these routes: answers without
		// freshness of their own are stored for 5 minutes (the default,
		// 0, stores only explicit freshness; see TestCacheSecureDefaults).
		"CACHE_TTL": "5m",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

func xcache(t *testing.T, url string, hdr ...string) (string, string) {
	t.Helper()
	resp, body := get(t, url, hdr...)
	return resp.Header.Get("X-Cache"), string(body)
}

func TestCacheMissThenHitAcrossGatewaysSharingRedis(t *testing.T) {
	redisAddr, _ := testsvc.Redis(t)
	o := newOrigin(t)
	a := start(t, cacheEnv(o, "CACHE_BACKEND", "redis", "REDIS_ADDR", redisAddr))
	b := start(t, cacheEnv(o, "CACHE_BACKEND", "redis", "REDIS_ADDR", redisAddr))

	// Both gateways serve the same site: the Host is part of the key.
	fetch := func(base string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, base+"/c/shared?x=1", nil)
		req.Host = "api.example.com"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := fetch(a.URL); resp.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("first request: X-Cache %q, want MISS", resp.Header.Get("X-Cache"))
	}
	// The store's write is asynchronous: wait until the entry is in
	// Redis (asking a gateway before that would be a second miss), then
	// ask the second gateway.
	rdb := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	defer rdb.Close()
	deadline := time.Now().Add(3 * time.Second)
	for n, _ := rdb.DBSize(context.Background()).Result(); n == 0; n, _ = rdb.DBSize(context.Background()).Result() {
		if time.Now().After(deadline) {
			t.Fatal("the first gateway never stored its entry in Redis")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, body := fetch(b.URL)
	if resp.Header.Get("X-Cache") != "HIT" || !strings.HasPrefix(string(body), "answer 1 ") {
		t.Fatalf("second gateway: X-Cache %q body %q, want a HIT of answer 1", resp.Header.Get("X-Cache"), body)
	}
	if resp.Header.Get("Age") == "" || resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("a HIT lacks Age, its own request ID or the security headers: %v", resp.Header)
	}
	if o.hits.Load() != 1 {
		t.Errorf("upstream saw %d requests, want 1", o.hits.Load())
	}
}

func TestCacheKeysQueryAndVary(t *testing.T) {
	o := newOrigin(t)
	gw := start(t, cacheEnv(o))
	xcache(t, gw.URL+"/c/q?a=1&b=2")
	if x, _ := xcache(t, gw.URL+"/c/q?b=2&a=1"); x != "HIT" {
		t.Errorf("same parameters in another order: %s, want HIT", x)
	}
	if x, _ := xcache(t, gw.URL+"/c/q?a=1&b=3"); x != "MISS" {
		t.Errorf("another query: %s, want MISS", x)
	}

	v := gw.URL + "/c/v?vary=Accept-Language"
	if _, body := xcache(t, v, "Accept-Language", "en"); !strings.Contains(body, "lang=en") {
		t.Fatal(body)
	}
	if x, body := xcache(t, v, "Accept-Language", "fr"); x != "MISS" || !strings.Contains(body, "lang=fr") {
		t.Errorf("other language: %s %q, want a MISS in French", x, body)
	}
	if x, body := xcache(t, v, "Accept-Language", "en"); x != "HIT" || !strings.Contains(body, "lang=en") {
		t.Errorf("first language again: %s %q, want the English HIT", x, body)
	}
	if x, _ := xcache(t, gw.URL+"/c/star?vary=*"); x != "MISS" {
		t.Fatal(x)
	}
	if x, _ := xcache(t, gw.URL+"/c/star?vary=*"); x != "MISS" {
		t.Errorf("Vary: * stored: %s", x)
	}
}

func TestCacheNeverStores(t *testing.T) {
	o := newOrigin(t)
	gw := start(t, cacheEnv(o))
	tests := []struct {
		name, path string
		hdr        []string
		first      string // X-Cache of the first request
	}{
		{"Set-Cookie", "/c/r?cookie=1", nil, "MISS"},
		{"no-store", "/c/r?cc=no-store", nil, "MISS"},
		{"private", "/c/r?cc=private,max-age=60", nil, "MISS"},
		{"no-cache", "/c/r?cc=no-cache", nil, "MISS"},
		{"max-age=0", "/c/r?cc=max-age=0", nil, "MISS"},
		{"302", "/c/r?status=302", nil, "MISS"},
		{"500", "/c/r?status=500", nil, "MISS"},
		{"Authorization", "/c/auth", []string{"Authorization", "Bearer x"}, "BYPASS"},
		{"X-API-Key", "/c/key", []string{"X-API-Key", "k"}, "BYPASS"},
		{"Cookie", "/c/cookie", []string{"Cookie", "s=1"}, "BYPASS"},
		{"Range", "/c/range", []string{"Range", "bytes=0-1"}, "BYPASS"},
		{"client no-store", "/c/cns", []string{"Cache-Control", "no-store"}, "MISS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := o.hits.Load()
			if x, _ := xcache(t, gw.URL+tc.path, tc.hdr...); x != tc.first {
				t.Errorf("first: X-Cache %q, want %s", x, tc.first)
			}
			xcache(t, gw.URL+tc.path, tc.hdr...)
			if got := o.hits.Load() - before; got != 2 {
				t.Errorf("upstream saw %d of 2 requests: the answer was stored", got)
			}
		})
	}
	t.Run("status 404 is stored", func(t *testing.T) {
		xcache(t, gw.URL+"/c/r?status=404")
		if x, _ := xcache(t, gw.URL+"/c/r?status=404"); x != "HIT" {
			t.Errorf("404: %s, want HIT", x)
		}
	})
	t.Run("route with cache_ttl_secs 0", func(t *testing.T) {
		xcache(t, gw.URL+"/off/x")
		if x, _ := xcache(t, gw.URL+"/off/x"); x != "" {
			t.Errorf("X-Cache %q on a route that does not cache", x)
		}
	})
	t.Run("cache_authenticated shares answers to credentialed requests", func(t *testing.T) {
		xcache(t, gw.URL+"/shared/x", "Cookie", "a=1")
		if x, _ := xcache(t, gw.URL+"/shared/x", "Cookie", "a=2"); x != "HIT" {
			t.Errorf("X-Cache %q, want HIT", x)
		}
	})
	t.Run("client no-cache is answered from a fresh entry", func(t *testing.T) {
		_, stored := xcache(t, gw.URL+"/c/fresh")
		for _, hdr := range [][]string{{"Cache-Control", "no-cache"}, {"Cache-Control", "max-age=0"}, {"Pragma", "no-cache"}} {
			if x, body := xcache(t, gw.URL+"/c/fresh", hdr...); x != "HIT" || body != stored {
				t.Errorf("%s: X-Cache %q body %q, want the stored answer", hdr, x, body)
			}
		}
	})
	t.Run("CACHE_CLIENT_REVALIDATE: client no-cache skips the lookup and refreshes", func(t *testing.T) {
		gw := start(t, cacheEnv(o, "CACHE_CLIENT_REVALIDATE", "true"))
		xcache(t, gw.URL+"/c/fresh")
		x, body := xcache(t, gw.URL+"/c/fresh", "Cache-Control", "no-cache")
		if x != "BYPASS" {
			t.Errorf("X-Cache %q, want BYPASS", x)
		}
		if x2, body2 := xcache(t, gw.URL+"/c/fresh"); x2 != "HIT" || body2 != body {
			t.Errorf("the refreshed answer was not stored: %s %q vs %q", x2, body2, body)
		}
	})
	t.Run("a successful POST invalidates", func(t *testing.T) {
		xcache(t, gw.URL+"/c/doc")
		resp, err := client.Post(gw.URL+"/c/doc", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if x, _ := xcache(t, gw.URL+"/c/doc"); x != "MISS" {
			t.Errorf("after POST: %s, want MISS", x)
		}
	})
}

// TestCacheSecureDefaults: with nothing configured but routes, the cache
// shares only what the upstream declared shareable, never an answer to a
// personal request, and no client can replace what is stored.
func TestCacheSecureDefaults(t *testing.T) {
	o := newOrigin(t)
	env := cacheEnv(o, "CACHE_PRIVATE_HEADERS", "X-Auth-Token")
	delete(env, "CACHE_TTL")
	gw := start(t, env)
	twice := func(t *testing.T, path string) {
		t.Helper()
		before := o.hits.Load()
		xcache(t, gw.URL+path)
		if x, _ := xcache(t, gw.URL+path); x != "MISS" || o.hits.Load()-before != 2 {
			t.Errorf("%s: second X-Cache %q, upstream saw %d of 2: stored", path, x, o.hits.Load()-before)
		}
	}
	t.Run("no explicit freshness: not stored", func(t *testing.T) { twice(t, "/c/plain") })
	t.Run("Expires 0: not stored", func(t *testing.T) { twice(t, "/c/e0?expires=0") })
	t.Run("Expires in the past: not stored", func(t *testing.T) {
		twice(t, "/c/ep?expires="+url.QueryEscape(time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)))
	})
	t.Run("Expires in the future: stored", func(t *testing.T) {
		u := gw.URL + "/c/ef?expires=" + url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		xcache(t, u)
		if x, _ := xcache(t, u); x != "HIT" {
			t.Errorf("X-Cache %q, want HIT", x)
		}
	})
	t.Run("max-age: stored", func(t *testing.T) {
		xcache(t, gw.URL+"/c/m?cc=max-age=60")
		if x, _ := xcache(t, gw.URL+"/c/m?cc=max-age=60"); x != "HIT" {
			t.Errorf("X-Cache %q, want HIT", x)
		}
	})
	t.Run("a route's cache_ttl_secs vouches for it", func(t *testing.T) {
		xcache(t, gw.URL+"/short/v")
		if x, _ := xcache(t, gw.URL+"/short/v"); x != "HIT" {
			t.Errorf("X-Cache %q, want HIT", x)
		}
	})
	t.Run("a CACHE_PRIVATE_HEADERS request is neither served nor stored", func(t *testing.T) {
		u := gw.URL + "/c/me?cc=max-age=60&reflect=X-Auth-Token"
		if x, body := xcache(t, u, "X-Auth-Token", "victim"); x != "BYPASS" || !strings.Contains(body, "victim") {
			t.Errorf("personal request: X-Cache %q %q", x, body)
		}
		if x, body := xcache(t, u); x != "MISS" || strings.Contains(body, "victim") {
			t.Errorf("an anonymous client got X-Cache %q %q", x, body)
		}
		// A stored entry is not served to a personal request either.
		if x, body := xcache(t, u, "X-Auth-Token", "victim"); x != "BYPASS" || !strings.Contains(body, "victim") {
			t.Errorf("personal request after an entry was stored: X-Cache %q %q", x, body)
		}
	})
	t.Run("Proxy-Authorization is a credential", func(t *testing.T) {
		if x, _ := xcache(t, gw.URL+"/c/pa?cc=max-age=60", "Proxy-Authorization", "Basic eDp5"); x != "BYPASS" {
			t.Errorf("X-Cache %q, want BYPASS", x)
		}
	})
	t.Run("a client cannot replace a fresh entry", func(t *testing.T) {
		u := gw.URL + "/c/home?cc=max-age=60&reflect=X-Original-Url"
		_, good := xcache(t, u)
		if x, body := xcache(t, u, "Cache-Control", "no-cache", "X-Original-URL", "/evil<script>"); x != "HIT" || body != good {
			t.Errorf("attacker's no-cache: X-Cache %q %q, want the stored answer", x, body)
		}
		if x, body := xcache(t, u); x != "HIT" || strings.Contains(body, "evil") {
			t.Errorf("the next client got X-Cache %q %q", x, body)
		}
	})
}

func TestCacheTTLHeadAndConditional(t *testing.T) {
	o := newOrigin(t)
	gw := start(t, cacheEnv(o))
	u := gw.URL + "/c/t?cc=max-age=1&etag=%22v1%22"
	xcache(t, u)
	if x, _ := xcache(t, u); x != "HIT" {
		t.Fatalf("within max-age: %s", x)
	}

	req, _ := http.NewRequest(http.MethodHead, u, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Cache") != "HIT" || resp.ContentLength != int64(len("answer 1 for GET /t?cc=max-age=1&etag=%22v1%22 lang=")) {
		t.Errorf("HEAD from the GET entry: X-Cache %q Content-Length %d", resp.Header.Get("X-Cache"), resp.ContentLength)
	}

	resp, body := get(t, u, "If-None-Match", `W/"v1"`)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("Etag") != `"v1"` {
		t.Errorf("conditional HIT: %d %q etag %q, want 304", resp.StatusCode, body, resp.Header.Get("Etag"))
	}
	time.Sleep(1100 * time.Millisecond)
	if x, _ := xcache(t, u); x != "MISS" {
		t.Errorf("after max-age: %s, want MISS", x)
	}
	// A conditional miss is answered 304 by the gateway while the full
	// answer is stored for the next client.
	u2 := gw.URL + "/c/t2?etag=%22v2%22"
	resp, _ = get(t, u2, "If-None-Match", `"v2"`)
	if resp.StatusCode != http.StatusNotModified || resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("conditional miss: %d %s", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	if resp, body := get(t, u2); resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "HIT" || !strings.HasPrefix(string(body), "answer") {
		t.Errorf("after a conditional miss: %d %s %q", resp.StatusCode, resp.Header.Get("X-Cache"), body)
	}
}

func TestCacheCoalescesConcurrentMisses(t *testing.T) {
	o := newOrigin(t)
	gw := start(t, cacheEnv(o))
	run := func(url string, n int) []string {
		var wg sync.WaitGroup
		bodies := make([]string, n)
		for i := range n {
			wg.Go(func() {
				_, b := get(t, url)
				bodies[i] = string(b)
			})
		}
		wg.Wait()
		return bodies
	}
	bodies := run(gw.URL+"/c/slow?sleep=300", 100)
	if o.hits.Load() != 1 {
		t.Errorf("100 concurrent misses made %d upstream requests, want 1", o.hits.Load())
	}
	for _, b := range bodies {
		if b != bodies[0] {
			t.Fatalf("waiters got different answers: %q vs %q", b, bodies[0])
		}
	}
	// An answer that may not be stored is never handed to another caller.
	before := o.hits.Load()
	bodies = run(gw.URL+"/c/private?sleep=300&cc=private", 20)
	if got := o.hits.Load() - before; got != 20 {
		t.Errorf("20 requests for a private answer made %d upstream requests, want 20", got)
	}
	seen := map[string]bool{}
	for _, b := range bodies {
		seen[b] = true
	}
	if len(seen) != 20 {
		t.Errorf("a private answer was shared: %d distinct bodies for 20 requests", len(seen))
	}
}

func TestCacheRedisOutageCostsNothing(t *testing.T) {
	srv := testsvc.RestartableRedis(t)
	o := newOrigin(t)
	gw := start(t, cacheEnv(o, "CACHE_BACKEND", "redis", "REDIS_ADDR", srv.Addr))
	u := gw.URL + "/c/outage"
	xcache(t, u)
	time.Sleep(100 * time.Millisecond)
	if x, _ := xcache(t, u); x != "HIT" {
		t.Fatalf("before the outage: %s", x)
	}
	srv.Stop()
	var worst time.Duration
	for i := range 200 {
		began := time.Now()
		resp, body := get(t, u)
		worst = max(worst, time.Since(began))
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "answer") {
			t.Fatalf("request %d during the outage: %d %q", i, resp.StatusCode, body)
		}
	}
	if worst > 250*time.Millisecond {
		t.Errorf("slowest request during the outage took %v", worst)
	}
	if n := strings.Count(gw.Logs.String(), "redis cache unreachable"); n != 1 {
		t.Errorf("%d outage warnings, want 1", n)
	}
	_, metrics := get(t, gw.OpsURL+"/metrics")
	if !strings.Contains(string(metrics), "cache_errors_total ") || strings.Contains(string(metrics), "cache_errors_total 0\n") {
		t.Error("cache_errors_total did not count the outage")
	}
	srv.Start()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if x, _ := xcache(t, u); x == "HIT" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache did not resume after Redis came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStatsReportCache(t *testing.T) {
	o := newOrigin(t)
	gw := start(t, cacheEnv(o))
	xcache(t, gw.URL+"/c/s")
	xcache(t, gw.URL+"/c/s")
	xcache(t, gw.URL+"/c/s")
	_, body := get(t, gw.OpsURL+"/stats")
	if !strings.Contains(string(body), `"cache_hit_ratio": 0.666`) || !strings.Contains(string(body), `"backend": "memory"`) ||
		!strings.Contains(string(body), `"requests_per_second"`) {
		t.Errorf("/stats: %s", body)
	}
	if !strings.Contains(gw.Logs.String(), `"cache":"HIT"`) || !strings.Contains(gw.Logs.String(), `"cache":"MISS"`) {
		t.Error("the access log does not say how the cache answered")
	}
}

// TestCachedAnswerServedInEachClientsEncoding: the cache stores the
// upstream's answer once, unencoded; compression wraps the cache, so a HIT
// reaches a gzip client gzipped and an identity client with the exact
// Content-Length.
func TestCachedAnswerServedInEachClientsEncoding(t *testing.T) {
	o := newOrigin(t)
	gw := start(t, cacheEnv(o, "COMPRESSION_MIN_BYTES", "16"))
	raw := &http.Transport{DisableCompression: true}
	fetch := func(ae string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/c/enc?ct=text/plain&etag=%22e%22", nil)
		if ae != "" {
			req.Header.Set("Accept-Encoding", ae)
		}
		resp, err := raw.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	first, plain := fetch("")
	if first.Header.Get("X-Cache") != "MISS" {
		t.Fatal(first.Header)
	}
	resp, b := fetch("gzip")
	if resp.Header.Get("X-Cache") != "HIT" || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Etag") != `W/"e"` {
		t.Fatalf("gzip client on a HIT: %v", resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if unzipped, _ := io.ReadAll(zr); !bytes.Equal(unzipped, plain) {
		t.Fatalf("gzip HIT decodes to %q, want %q", unzipped, plain)
	}
	resp, b = fetch("")
	if resp.Header.Get("X-Cache") != "HIT" || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(b, plain) ||
		resp.ContentLength != int64(len(plain)) || resp.Header.Get("Etag") != `"e"` {
		t.Fatalf("identity client on a HIT: %v (%d bytes)", resp.Header, len(b))
	}
	if o.hits.Load() != 1 {
		t.Errorf("upstream saw %d requests, want 1", o.hits.Load())
	}
}

// TestCacheCannotBePoisoned: no request can make the gateway store, under
// another request's key, an answer that request would not have got.
func TestCacheCannotBePoisoned(t *testing.T) {
	o := newOrigin(t)
	gw := start(t, cacheEnv(o))
	do := func(method, url, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, url, rd)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	t.Run("HEAD with no-cache stores no empty body", func(t *testing.T) {
		u := gw.URL + "/c/page?flush=1"
		do(http.MethodHead, u, "", "Cache-Control", "no-cache")
		if resp, body := do(http.MethodGet, u, ""); !strings.HasPrefix(body, "answer") {
			t.Errorf("GET after a HEAD no-cache: X-Cache %s, body %q", resp.Header.Get("X-Cache"), body)
		}
	})
	t.Run("an encoded ? in the path is not the query", func(t *testing.T) {
		do(http.MethodGet, gw.URL+"/c/doc%3Fid=1", "")
		if resp, body := do(http.MethodGet, gw.URL+"/c/doc?id=1", ""); resp.Header.Get("X-Cache") == "HIT" || !strings.Contains(body, "/doc?id=1 ") {
			t.Errorf("/c/doc?id=1 answered from /c/doc%%3Fid=1: X-Cache %s, body %q", resp.Header.Get("X-Cache"), body)
		}
	})
	t.Run("a GET body does not choose the stored answer", func(t *testing.T) {
		u := gw.URL + "/c/search"
		if resp, _ := do(http.MethodGet, u, "evil"); resp.Header.Get("X-Cache") != "BYPASS" {
			t.Errorf("GET with a body: X-Cache %s, want BYPASS", resp.Header.Get("X-Cache"))
		}
		if _, body := do(http.MethodGet, u, ""); strings.Contains(body, "evil") {
			t.Errorf("the answer to a GET with a body was served to another client: %q", body)
		}
	})
	t.Run("no-cache, no-store stores nothing", func(t *testing.T) {
		u := gw.URL + "/c/ns"
		do(http.MethodGet, u, "", "Cache-Control", "no-cache, no-store")
		if resp, _ := do(http.MethodGet, u, ""); resp.Header.Get("X-Cache") == "HIT" {
			t.Error("the answer to a no-store request was stored")
		}
	})
}

// TestCacheHitCarriesOnlyItsOwnRequestID: an upstream that echoes the
// request ID must not hand the first client's ID to every later one.
func TestCacheHitCarriesOnlyItsOwnRequestID(t *testing.T) {
	o := newOrigin(t)
	gw := start(t, cacheEnv(o))
	u := gw.URL + "/c/id?echoid=1"
	get(t, u, "X-Request-Id", "first-client")
	resp, _ := get(t, u, "X-Request-Id", "second-client")
	if ids := resp.Header.Values("X-Request-Id"); resp.Header.Get("X-Cache") != "HIT" || len(ids) != 1 || ids[0] != "second-client" {
		t.Errorf("HIT: X-Cache %s, X-Request-Id %q, want only second-client", resp.Header.Get("X-Cache"), ids)
	}
}
