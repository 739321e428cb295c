package gateway

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/reload"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testutil"
	"github.com/portcullis/portcullis/internal/upstream"
)

const reloadToken = "reload-admin-token-0123456789abcdef"

// writeAtomically replaces path the way editors and config managers do:
// write a temporary file beside it, then rename it over the old one.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// wsEcho is a backend that upgrades and echoes bytes back.
func wsEcho(t *testing.T) string {
	return mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want websocket", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw)
	}))
}

// openWebSocket upgrades through the gateway at addr and returns the tunnel.
func openWebSocket(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", err, resp)
	}
	return c, br
}

// wsRoundTrip sends msg through the tunnel and expects it back.
func wsRoundTrip(c net.Conn, br *bufio.Reader, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(br, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// named answers with its name and the path it got; /slow waits first.
func named(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, name)
	}
}

// TestHotReloadUnderContinuousLoad is the acceptance test: 100
// reloads that add, change and remove routes, triggered alternately by the
// file watcher and POST /admin/reload, while clients loop over keep-alive
// connections and a WebSocket stays open. No request fails, the WebSocket
// lives through every reload, each reload is visible within a second, a
// request in flight on a route being removed finishes, and an invalid file
// leaves the old routes serving.
func TestHotReloadUnderContinuousLoad(t *testing.T) {
	a, _ := serve(t, named("a"))
	b, _ := serve(t, named("b"))
	ws := wsEcho(t)
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	file := func(i int) string {
		target := a // /changing alternates backends and settings
		if i%2 == 1 {
			target = b
		}
		return fmt.Sprintf(`connection_timeout: %ds
routes:
  - {prefix: /stable, target_url: "%s"}
  - {prefix: /ws, target_url: "%s", timeout_secs: %d}
  - {prefix: /changing, target_url: "%s", algo: %s}
  - {prefix: /gen/%d, target_url: "%s"}
`, 10+i%3, a, ws, 5+i%4, target, []string{"round-robin", "least-conn", "ip-hash", "weighted"}[i%4], i, b)
	}
	writeAtomically(t, path, file(0))
	gw := start(t, map[string]string{"CONFIG_FILE": path, "ADMIN_TOKEN": reloadToken,
		"MAX_REQUESTS_PER_SECOND": "100000", "MAX_BURST_SIZE": "100000", "DDOS_THRESHOLD": "10000000", "LOG_LEVEL": "info"})

	wsConn, wsReader := openWebSocket(t, gw.Addr, "/ws/chat")
	if err := wsRoundTrip(wsConn, wsReader, "hello"); err != nil {
		t.Fatal(err)
	}

	// The load: keep-alive clients on routes that exist in every version.
	keepAlive := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer keepAlive.CloseIdleConnections()
	var sent, failed atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			paths := []string{"/stable/x", "/changing/y"}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				p := paths[(n+w)%2]
				resp, err := keepAlive.Get(gw.URL + p)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					failures.Store(p+": "+err.Error(), true)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || (string(body) != "a" && string(body) != "b") {
					failed.Add(1)
					failures.Store(fmt.Sprintf("%s: %d %q", p, resp.StatusCode, body), true)
				}
			}
		})
	}

	// visible polls until GET path answers want, and returns how long it took.
	visible := func(path, want string) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 3*time.Second {
			resp, err := keepAlive.Get(gw.URL + path)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && string(body) == want {
					return time.Since(start)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%s never answered %q", path, want)
		return 0
	}

	var slowest time.Duration
	for i := 1; i <= 100; i++ {
		// A slow request on the route this reload removes: it started on
		// the old table and must finish there.
		inflight := make(chan string, 1)
		if i%10 == 0 {
			go func() {
				resp, err := http.Get(fmt.Sprintf("%s/gen/%d/slow", gw.URL, i-1))
				if err != nil {
					inflight <- err.Error()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				inflight <- fmt.Sprintf("%d %s", resp.StatusCode, body)
			}()
			time.Sleep(50 * time.Millisecond) // let it reach the backend
		}
		writeAtomically(t, path, file(i))
		if i%2 == 1 {
			code, body := adminDo(t, http.MethodPost, gw.OpsURL+"/admin/reload", reloadToken)
			if code != http.StatusOK {
				t.Fatalf("reload %d: %d %s", i, code, body)
			}
		}
		d := visible(fmt.Sprintf("/gen/%d/x", i), "b")
		want := "a"
		if i%2 == 1 {
			want = "b"
		}
		if d2 := visible("/changing/z", want); d2 > d {
			d = d2
		}
		slowest = max(slowest, d)
		if d > time.Second {
			t.Errorf("reload %d became visible after %v", i, d)
		}
		if resp, _ := get(t, fmt.Sprintf("%s/gen/%d/x", gw.URL, i-1)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("reload %d: removed route /gen/%d answers %d", i, i-1, resp.StatusCode)
		}
		if i%10 == 0 {
			if got := <-inflight; got != "200 b" {
				t.Errorf("reload %d: the in-flight request on the removed route got %q", i, got)
			}
		}
		if i%25 == 0 {
			if err := wsRoundTrip(wsConn, wsReader, fmt.Sprintf("still-open-%d", i)); err != nil {
				t.Fatalf("WebSocket after reload %d: %v", i, err)
			}
		}
		if i == 50 {
			// An invalid file is refused whole, by both triggers; the
			// routes in force keep serving.
			writeAtomically(t, path, strings.Replace(file(51), "/stable,", "/stable, colour: red,", 1))
			code, body := adminDo(t, http.MethodPost, gw.OpsURL+"/admin/reload", reloadToken)
			if code != http.StatusBadRequest || !strings.Contains(body, `CONFIG_FILE.routes[0]: unknown field \"colour\"`) {
				t.Errorf("invalid file: %d %s", code, body)
			}
			time.Sleep(3 * reload.WatchDebounce) // the watcher sees it too
			if resp, body := get(t, gw.URL+"/gen/50/x"); resp.StatusCode != http.StatusOK || string(body) != "b" {
				t.Errorf("after a refused file /gen/50 answers %d %q", resp.StatusCode, body)
			}
			if v := testutil.MetricValue(t, gw.G.metrics.Registry, "config_reload_success"); v != 0 {
				t.Errorf("config_reload_success = %v after a refused file", v)
			}
		}
	}
	close(stop)
	wg.Wait()

	if err := wsRoundTrip(wsConn, wsReader, "bye"); err != nil {
		t.Errorf("WebSocket after 100 reloads: %v", err)
	}
	if n := failed.Load(); n > 0 {
		var list []string
		failures.Range(func(k, _ any) bool { list = append(list, k.(string)); return len(list) < 10 })
		t.Errorf("%d of %d requests failed during reloads: %q", n, sent.Load(), list)
	}
	if sent.Load() < 1000 {
		t.Errorf("only %d requests were sent: the load did not overlap the reloads", sent.Load())
	}
	if v := testutil.MetricValue(t, gw.G.metrics.Registry, "config_reload_success"); v != 1 {
		t.Errorf("config_reload_success = %v at the end", v)
	}
	t.Logf("%d requests, 0 failed; slowest reload visible after %v", sent.Load(), slowest)
}

// TestAdminReloadAndConfig pins the admin side: auth as for the rest of
// the admin API, 400 with every problem for an invalid file, 409 without
// CONFIG_FILE, the gauge and counter, and GET /admin/config showing the
// configuration in force with every secret redacted.
func TestAdminReloadAndConfig(t *testing.T) {
	up, _ := serve(t, named("a"))
	path := filepath.Join(t.TempDir(), "gateway.json")
	writeAtomically(t, path, `{"routes":[{"prefix":"/a","target_url":"`+up+`"}]}`)
	const (
		jwt     = "jwt-secret-0123456789-0123456789-abcdef"
		apiKey  = "api-key-0123456789-0123456789"
		redisPW = "redis-password-0123456789"
		dbPW    = "db-password-0123456789"
	)
	gw := start(t, map[string]string{"CONFIG_FILE": path, "ADMIN_TOKEN": reloadToken, "JWT_SECRET": jwt,
		"API_KEYS": apiKey, "REDIS_PASSWORD": redisPW, "API_KEYS_DATABASE_URL": "postgres://gw:" + dbPW + "@127.0.0.1:1/keys"})
	reg := gw.G.metrics.Registry
	if v := testutil.MetricValue(t, reg, "config_reload_success"); v != 1 {
		t.Errorf("config_reload_success at boot = %v", v)
	}

	for _, tc := range []struct {
		name, method, path, token string
		want                      int
	}{
		{name: "reload without a token", method: http.MethodPost, path: "/admin/reload", want: http.StatusUnauthorized},
		{name: "reload with a wrong token", method: http.MethodPost, path: "/admin/reload", token: "nope", want: http.StatusUnauthorized},
		{name: "reload by GET", method: http.MethodGet, path: "/admin/reload", token: reloadToken, want: http.StatusMethodNotAllowed},
		{name: "config without a token", method: http.MethodGet, path: "/admin/config", want: http.StatusUnauthorized},
		{name: "config by POST", method: http.MethodPost, path: "/admin/config", token: reloadToken, want: http.StatusMethodNotAllowed},
	} {
		if code, body := adminDo(t, tc.method, gw.OpsURL+tc.path, tc.token); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}

	// An invalid file: 400 with every problem, old routes keep serving.
	writeAtomically(t, path, `{"routes":[{"prefix":"/b","target_url":"ftp://x"},{"prefix":"/c"}],"retry_max":2}`)
	code, body := adminDo(t, http.MethodPost, gw.OpsURL+"/admin/reload", reloadToken)
	var refused struct {
		Error     string   `json:"error"`
		Problems  []string `json:"problems"`
		RequestID string   `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(body), &refused); err != nil || code != http.StatusBadRequest {
		t.Fatalf("invalid file: %d %s", code, body)
	}
	wantProblems := []string{`CONFIG_FILE: unknown field "retry_max"`, "CONFIG_FILE.routes[0].target_url: invalid value", "CONFIG_FILE.routes[1]: no target"}
	if len(refused.Problems) != len(wantProblems) || refused.RequestID == "" {
		t.Errorf("problems %q (request id %q), want %d", refused.Problems, refused.RequestID, len(wantProblems))
	}
	for _, w := range wantProblems {
		if !strings.Contains(body, strings.ReplaceAll(w, `"`, `\"`)) {
			t.Errorf("no problem %q in %s", w, body)
		}
	}
	if resp, b := get(t, gw.URL+"/a/x"); resp.StatusCode != http.StatusOK || string(b) != "a" {
		t.Errorf("old route after a refused reload: %d %q", resp.StatusCode, b)
	}
	if v := testutil.MetricValue(t, reg, "config_reload_success"); v != 0 {
		t.Errorf("config_reload_success after a refusal = %v", v)
	}
	if !strings.Contains(gw.Logs.String(), `"msg":"configuration refused; the previous one keeps serving","component":"config"`) {
		t.Errorf("no refusal log line:\n%s", gw.Logs.String())
	}
	_, cfgBody := adminDo(t, http.MethodGet, gw.OpsURL+"/admin/config", reloadToken)
	if !strings.Contains(cfgBody, `"success": false`) || !strings.Contains(cfgBody, "retry_max") {
		t.Errorf("/admin/config does not show the refusal:\n%s", cfgBody)
	}

	// A valid file again.
	writeAtomically(t, path, `{"cors_allowed_origins":["https://app.example"],"routes":[{"prefix":"/b","target_url":"`+up+`","require_auth":true}]}`)
	code, body = adminDo(t, http.MethodPost, gw.OpsURL+"/admin/reload", reloadToken)
	if code != http.StatusOK || !strings.Contains(body, `"added": [`) || !strings.Contains(body, `"/b"`) {
		t.Errorf("valid file: %d %s", code, body)
	}
	if v := testutil.MetricValue(t, reg, "config_reload_success"); v != 1 {
		t.Errorf("config_reload_success after a good reload = %v", v)
	}
	exposition := string(mustMetrics(t, gw.OpsURL))
	for _, want := range []string{`config_reloads_total{result="failure"} 1`, `config_reloads_total{result="success"} 1`} {
		if !strings.Contains(exposition, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if resp, _ := get(t, gw.URL+"/a/x"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("removed route answers %d", resp.StatusCode)
	}
	if resp, _ := get(t, gw.URL+"/b/x"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("new route with require_auth answers %d", resp.StatusCode)
	}

	code, cfgBody = adminDo(t, http.MethodGet, gw.OpsURL+"/admin/config", reloadToken)
	if code != http.StatusOK {
		t.Fatalf("/admin/config: %d %s", code, cfgBody)
	}
	for _, secret := range []string{jwt, apiKey, redisPW, dbPW, reloadToken} {
		if strings.Contains(cfgBody, secret) {
			t.Errorf("/admin/config shows a secret %q", secret)
		}
	}
	var view struct {
		ConfigFile   string `json:"config_file"`
		RoutesSource string `json:"routes_source"`
		FileTunables []string
		Routes       []struct {
			Prefix      string `json:"prefix"`
			RequireAuth bool   `json:"require_auth"`
			Targets     []struct {
				URL string `json:"url"`
			} `json:"targets"`
		} `json:"routes"`
		Settings map[string]any `json:"settings"`
		Reload   struct {
			Success bool `json:"success"`
		} `json:"reload"`
	}
	if err := json.Unmarshal([]byte(cfgBody), &view); err != nil {
		t.Fatal(err)
	}
	if view.ConfigFile != path || view.RoutesSource != "CONFIG_FILE" || len(view.Routes) != 1 || view.Routes[0].Prefix != "/b" ||
		!view.Routes[0].RequireAuth || view.Routes[0].Targets[0].URL != up || !view.Reload.Success {
		t.Errorf("view: %s", cfgBody)
	}
	for _, k := range []string{"JWT_SECRET", "ADMIN_TOKEN", "API_KEYS", "REDIS_PASSWORD"} {
		if view.Settings[k] != "[redacted]" {
			t.Errorf("%s shown as %v", k, view.Settings[k])
		}
	}
	if got := view.Settings["API_KEYS_DATABASE_URL"]; got != "postgres://gw:[redacted]@127.0.0.1:1/keys" {
		t.Errorf("API_KEYS_DATABASE_URL shown as %v", got)
	}
	if got := fmt.Sprint(view.Settings["CORS_ALLOWED_ORIGINS"]); got != "[https://app.example]" {
		t.Errorf("CORS_ALLOWED_ORIGINS from the file shown as %v", got)
	}

	// Without CONFIG_FILE there is nothing to reload.
	other := start(t, map[string]string{"ADMIN_TOKEN": reloadToken, "SERVICE_ROUTES": routes(`{"prefix":"/a","target_url":"` + up + `"}`)})
	if code, body := adminDo(t, http.MethodPost, other.OpsURL+"/admin/reload", reloadToken); code != http.StatusConflict {
		t.Errorf("reload without CONFIG_FILE: %d %s", code, body)
	}
	// And without ADMIN_TOKEN the endpoints are off like the rest of the admin API.
	off := start(t, map[string]string{"CONFIG_FILE": path})
	if code, _ := adminDo(t, http.MethodGet, off.OpsURL+"/admin/config", reloadToken); code != http.StatusForbidden {
		t.Errorf("/admin/config without ADMIN_TOKEN: %d", code)
	}
}

func mustMetrics(t *testing.T, base string) []byte {
	t.Helper()
	_, body := get(t, base+"/metrics")
	return body
}

// TestReloadCarriesBackendStateOver pins what survives a reload: a backend
// kept by the new file is the same Backend (its open breaker stays open),
// one removed from every route loses its backend_health_status series and
// its registry entry, and a new one is probed by the running health
// checker.
func TestReloadCarriesBackendStateOver(t *testing.T) {
	keep, _ := serve(t, named("keep"))
	gone, _ := serve(t, named("gone"))
	dead := deadURL(t)
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	writeAtomically(t, path, fmt.Sprintf("routes:\n  - {prefix: /k, target_url: '%s'}\n  - {prefix: /g, target_url: '%s'}\n", keep, gone))
	gw := start(t, map[string]string{"CONFIG_FILE": path, "HEALTH_CHECK_INTERVAL": "50ms", "HEALTH_CHECK_FALLS": "1",
		"CIRCUIT_BREAKER_MAX": "1", "CIRCUIT_BREAKER_TIMEOUT": "1h"})
	before := gw.G.snap.Load()
	var kept *upstream.Backend
	for _, b := range before.Backends {
		if b.String() == keep {
			kept = b
		}
	}
	// Open the kept backend's breaker by hand: one failure trips it.
	report, err := kept.Allow()
	if err != nil {
		t.Fatal(err)
	}
	report(fmt.Errorf("scripted failure"))
	if kept.Breaker() != upstream.BreakerOpen {
		t.Fatalf("breaker %v", kept.Breaker())
	}

	writeAtomically(t, path, fmt.Sprintf("routes:\n  - {prefix: /k, target_url: '%s', timeout_secs: 3}\n  - {prefix: /d, target_url: '%s'}\n", keep, dead))
	res, err := gw.G.Reload(reload.TriggerAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Changed, ",") != "/k" || strings.Join(res.Added, ",") != "/d" || strings.Join(res.Removed, ",") != "/g" ||
		strings.Join(res.BackendsRemoved, ",") != gone || strings.Join(res.BackendsAdded, ",") != dead {
		t.Errorf("result %+v", res)
	}
	after := gw.G.snap.Load()
	if !after.Has(kept) || kept.Breaker() != upstream.BreakerOpen {
		t.Errorf("the kept backend was replaced or its breaker reset (%v)", kept.Breaker())
	}
	for _, b := range gw.G.registry.All() {
		if b.String() == gone {
			t.Errorf("the removed backend is still in the registry")
		}
	}
	// The checker reads the table in force each round: the new dead
	// backend is found dead, and the removed one's series is gone for good.
	deadline := time.Now().Add(3 * time.Second)
	for {
		exp := string(mustMetrics(t, gw.OpsURL))
		if strings.Contains(exp, `backend_health_status{backend="`+dead+`"} 0`) {
			if strings.Contains(exp, gone) {
				t.Errorf("backend_health_status still has the removed backend:\n%s", exp)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new backend was never probed dead:\n%s", exp)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(150 * time.Millisecond) // a few more rounds
	if exp := string(mustMetrics(t, gw.OpsURL)); strings.Contains(exp, gone) {
		t.Errorf("a late probe brought the removed backend's series back")
	}
}

// TestUnchangedRoutesKeepTheirState pins that a reload takes over an
// unchanged route whole (its per-route limiter buckets included), so
// reloading does not hand every client a fresh burst.
func TestUnchangedRoutesKeepTheirState(t *testing.T) {
	up, _ := serve(t, named("a"))
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	writeAtomically(t, path, fmt.Sprintf("routes:\n  - {prefix: /limited, target_url: '%s', rate_limit_rps: 0.01, rate_limit_burst: 2}\n  - {prefix: /other, target_url: '%s'}\n", up, up))
	gw := start(t, map[string]string{"CONFIG_FILE": path, "TRUSTED_PROXIES": untrusted})
	for range 2 {
		if resp, _ := get(t, gw.URL+"/limited/x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("within the burst: %d", resp.StatusCode)
		}
	}
	first := gw.G.snap.Load().Routes[0]
	writeAtomically(t, path, fmt.Sprintf("routes:\n  - {prefix: /limited, target_url: '%s', rate_limit_rps: 0.01, rate_limit_burst: 2}\n  - {prefix: /other, target_url: '%s', timeout_secs: 2}\n", up, up))
	if _, err := gw.G.Reload(reload.TriggerAdmin); err != nil {
		t.Fatal(err)
	}
	if gw.G.snap.Load().Routes[0] != first {
		t.Error("the unchanged route was rebuilt")
	}
	if resp, _ := get(t, gw.URL+"/limited/x"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after a reload the spent burst is back: %d", resp.StatusCode)
	}
	// A changed CORS list rebuilds every chain.
	writeAtomically(t, path, fmt.Sprintf("cors_allowed_origins: ['https://x.example']\nroutes:\n  - {prefix: /limited, target_url: '%s', rate_limit_rps: 0.01, rate_limit_burst: 2}\n  - {prefix: /other, target_url: '%s', timeout_secs: 2}\n", up, up))
	if _, err := gw.G.Reload(reload.TriggerAdmin); err != nil {
		t.Fatal(err)
	}
	if gw.G.snap.Load().Routes[0] == first {
		t.Error("a CORS change did not rebuild the route's chain")
	}
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/other/x", nil)
	req.Header.Set("Origin", "https://x.example")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://x.example" {
		t.Errorf("CORS from the reloaded file: %q", got)
	}
}

// waitAnswer polls GET url until it answers 200 with want, failing after within.
func waitAnswer(t *testing.T, url, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == want {
				return time.Since(start)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never answered %q within %v", url, want, within)
	return 0
}

// TestWatcherFollowsAConfigMapSwap mounts the file the way Kubernetes does
// a ConfigMap (gateway.yaml → ..data/gateway.yaml, ..data → a versioned
// directory) and updates it the way the kubelet does: a new directory and
// an atomic rename of the ..data symlink. The file's own name never sees
// an event; the watcher must reload anyway.
func TestWatcherFollowsAConfigMapSwap(t *testing.T) {
	a, _ := serve(t, named("a"))
	b, _ := serve(t, named("b"))
	dir := t.TempDir()
	version := func(n int, target string) {
		t.Helper()
		vdir := filepath.Join(dir, fmt.Sprintf("..2026_v%d", n))
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vdir, "gateway.yaml"), []byte("routes: [{prefix: /r, target_url: '"+target+"'}]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(vdir), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version(1, a)
	if err := os.Symlink(filepath.Join("..data", "gateway.yaml"), filepath.Join(dir, "gateway.yaml")); err != nil {
		t.Fatal(err)
	}
	gw := start(t, map[string]string{"CONFIG_FILE": filepath.Join(dir, "gateway.yaml")})
	waitAnswer(t, gw.URL+"/r/x", "a", time.Second)
	version(2, b)
	if d := waitAnswer(t, gw.URL+"/r/x", "b", 2*time.Second); d > time.Second {
		t.Errorf("the ConfigMap swap took %v to apply", d)
	}
}

// TestWatcherReloadsInABusyDirectory pins that a directory that is never
// quiet for the debounce (a log written beside the file, say) still gets
// the reload, after at most reload.WatchMaxDelay.
func TestWatcherReloadsInABusyDirectory(t *testing.T) {
	a, _ := serve(t, named("a"))
	b, _ := serve(t, named("b"))
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	writeAtomically(t, path, "routes: [{prefix: /r, target_url: '"+a+"'}]\n")
	gw := start(t, map[string]string{"CONFIG_FILE": path})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		noise := filepath.Join(dir, "noise.log")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(reload.WatchDebounce / 4):
				os.WriteFile(noise, []byte(fmt.Sprint(i)), 0o600)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	writeAtomically(t, path, "routes: [{prefix: /r, target_url: '"+b+"'}]\n")
	if d := waitAnswer(t, gw.URL+"/r/x", "b", 3*time.Second); d > reload.WatchMaxDelay+time.Second {
		t.Errorf("reload in a busy directory took %v", d)
	}
}

// TestReloadsDoNotLeakBackends pins that a backend removed by a reload is
// released whole: after many reloads that each bring a new backend (and
// drop the last one), with traffic through each, the gateway holds the
// per-backend series of the backends in force only.
func TestReloadsDoNotLeakBackends(t *testing.T) {
	up, _ := serve(t, named("a"))
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	file := func(i int) string {
		return fmt.Sprintf("routes:\n  - {prefix: /r, target_url: '%s/v%d'}\n  - {prefix: /t, target_url: '%s'}\n", up, i, up)
	}
	writeAtomically(t, path, file(0))
	gw := start(t, map[string]string{"CONFIG_FILE": path})
	const reloads = 200
	for i := 1; i <= reloads; i++ {
		writeAtomically(t, path, file(i))
		if _, err := gw.G.Reload(reload.TriggerAdmin); err != nil {
			t.Fatal(err)
		}
		if resp, _ := get(t, gw.URL+"/r/x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("reload %d: %d", i, resp.StatusCode)
		}
		if resp, _ := get(t, gw.URL+"/t/x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("reload %d: %d", i, resp.StatusCode)
		}
	}
	exp := string(mustMetrics(t, gw.OpsURL))
	var series []string
	for _, line := range strings.Split(exp, "\n") {
		if strings.HasPrefix(line, "upstream_request_duration_seconds_count{") || strings.HasPrefix(line, "backend_health_status{") {
			series = append(series, line)
		}
	}
	if len(series) != 4 { // each metric for the two backends in force
		t.Errorf("%d per-backend series after %d reloads, want 4: %q…", len(series), reloads, series[:min(len(series), 6)])
	}
}

// TestWatcherFollowsTheSymlinkToANewDirectory pins that after CONFIG_FILE's
// symlink is swapped to a file in another directory, edits of that file
// (which change nothing in the symlink's directory) are still seen.
func TestWatcherFollowsTheSymlinkToANewDirectory(t *testing.T) {
	a, _ := serve(t, named("a"))
	b, _ := serve(t, named("b"))
	c, _ := serve(t, named("c"))
	root := t.TempDir()
	link := filepath.Join(root, "etc", "gateway.yaml")
	v1, v2 := filepath.Join(root, "v1"), filepath.Join(root, "v2")
	for _, d := range []string{filepath.Dir(link), v1, v2} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	route := func(target string) string { return "routes: [{prefix: /r, target_url: '" + target + "'}]\n" }
	writeAtomically(t, filepath.Join(v1, "gateway.yaml"), route(a))
	writeAtomically(t, filepath.Join(v2, "gateway.yaml"), route(b))
	if err := os.Symlink(filepath.Join(v1, "gateway.yaml"), link); err != nil {
		t.Fatal(err)
	}
	gw := start(t, map[string]string{"CONFIG_FILE": link})
	waitAnswer(t, gw.URL+"/r/x", "a", time.Second)

	// Swap the symlink to v2, atomically.
	if err := os.Symlink(filepath.Join(v2, "gateway.yaml"), link+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+".tmp", link); err != nil {
		t.Fatal(err)
	}
	waitAnswer(t, gw.URL+"/r/x", "b", 2*time.Second)

	// Edit the file the symlink now points to.
	writeAtomically(t, filepath.Join(v2, "gateway.yaml"), route(c))
	waitAnswer(t, gw.URL+"/r/x", "c", 2*time.Second)
}

// TestRefusedFileReportsBoundedProblems pins that a file with thousands of
// problems (4 MiB of bad routes is 130,000 of them, 20 MB of text) is
// refused with a bounded answer, log line and /admin/config: the first
// problems and a count of the rest.
func TestRefusedFileReportsBoundedProblems(t *testing.T) {
	up, _ := serve(t, named("a"))
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	writeAtomically(t, path, "routes: [{prefix: /a, target_url: '"+up+"'}]\n")
	gw := start(t, map[string]string{"CONFIG_FILE": path, "ADMIN_TOKEN": reloadToken})
	writeAtomically(t, path, "routes:\n"+strings.Repeat("  - {prefix: /a, target_url: 1}\n", 5000))
	code, body := adminDo(t, http.MethodPost, gw.OpsURL+"/admin/reload", reloadToken)
	var refused struct{ Problems []string }
	if err := json.Unmarshal([]byte(body), &refused); err != nil || code != http.StatusBadRequest {
		t.Fatalf("%d %.300s", code, body)
	}
	if n := len(refused.Problems); n > reload.MaxProblems+1 || !strings.Contains(refused.Problems[n-1], "more problems") {
		t.Errorf("%d problems returned, the last %q", n, refused.Problems[n-1])
	}
	_, cfgBody := adminDo(t, http.MethodGet, gw.OpsURL+"/admin/config", reloadToken)
	if len(cfgBody) > 64<<10 {
		t.Errorf("/admin/config is %d bytes", len(cfgBody))
	}
	if n := len(gw.Logs.String()); n > 256<<10 {
		t.Errorf("the log holds %d bytes after one refusal", n)
	}
}

// endpointSeries returns the endpoint label values of the request metrics
// (http_requests_total and http_request_duration_seconds) in an exposition.
func endpointSeries(exp string) []string {
	var out []string
	for _, line := range strings.Split(exp, "\n") {
		if !strings.HasPrefix(line, "http_requests_total{") && !strings.HasPrefix(line, "http_request_duration_seconds_count{") {
			continue
		}
		_, rest, ok := strings.Cut(line, `endpoint="`)
		if !ok {
			continue
		}
		label, _, _ := strings.Cut(rest, `"`)
		if !slices.Contains(out, label) {
			out = append(out, label)
		}
	}
	slices.Sort(out)
	return out
}

// waitEndpoints polls /metrics until ok accepts its endpoint labels (a
// request is counted just after its answer is sent) and returns the last
// labels read, failing the test after 5s.
func waitEndpoints(t *testing.T, base string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := endpointSeries(string(mustMetrics(t, base)))
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Errorf("the request metrics have endpoints %q…", got[:min(len(got), 8)])
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadsDoNotLeakEndpointSeries pins that the request series of a
// route prefix go with the route: after 200 reloads that each replace a
// prefix, with traffic through each, /metrics holds the series of the
// prefixes in force (and the gateway's own paths) only.
func TestReloadsDoNotLeakEndpointSeries(t *testing.T) {
	up, _ := serve(t, named("a"))
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	file := func(i int) string {
		return fmt.Sprintf("routes:\n  - {prefix: /stable, target_url: '%s'}\n  - {prefix: /gen/%d, target_url: '%s'}\n", up, i, up)
	}
	writeAtomically(t, path, file(0))
	gw := start(t, map[string]string{"CONFIG_FILE": path})
	const reloads = 200
	for i := 0; i <= reloads; i++ {
		if i > 0 {
			writeAtomically(t, path, file(i))
			if _, err := gw.G.Reload(reload.TriggerAdmin); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []string{fmt.Sprintf("/gen/%d/x", i), "/stable/x"} {
			if resp, _ := get(t, gw.URL+p); resp.StatusCode != http.StatusOK {
				t.Fatalf("reload %d, %s: %d", i, p, resp.StatusCode)
			}
		}
		if i%50 == 0 {
			mustMetrics(t, gw.OpsURL) // the gateway's own path is counted too
		}
	}
	want := []string{fmt.Sprintf("/gen/%d", reloads), "/metrics", "/stable"}
	if got := waitEndpoints(t, gw.OpsURL, func(got []string) bool { return slices.Equal(got, want) }); !slices.Equal(got, want) {
		t.Errorf("after %d reloads the request metrics have %d endpoints, want %q", reloads, len(got), want)
	}
}

// TestRequestOnARemovedRouteDoesNotBringItsSeriesBack pins that a request
// still running on a route when a reload removes it finishes (on the old
// table) without recreating the route's request series, which the reload
// deleted; and that the prefix, added again, is counted again.
func TestRequestOnARemovedRouteDoesNotBringItsSeriesBack(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	slow, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "slow")
	}))
	up, _ := serve(t, named("a"))
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	with := fmt.Sprintf("routes:\n  - {prefix: /stable, target_url: '%s'}\n  - {prefix: /doomed, target_url: '%s'}\n", up, slow)
	without := fmt.Sprintf("routes:\n  - {prefix: /stable, target_url: '%s'}\n", up)
	writeAtomically(t, path, with)
	gw := start(t, map[string]string{"CONFIG_FILE": path, "LOG_LEVEL": "info"})
	for _, p := range []string{"/doomed/x", "/stable/x"} {
		if resp, _ := get(t, gw.URL+p); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	if got := waitEndpoints(t, gw.OpsURL, func(got []string) bool { return slices.Contains(got, "/doomed") }); !slices.Contains(got, "/doomed") {
		t.Fatal("no series for /doomed before the reload")
	}

	status := make(chan int, 1)
	go func() {
		resp, err := client.Get(gw.URL + "/doomed/slow")
		if err != nil {
			status <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request never reached its backend")
	}
	writeAtomically(t, path, without)
	if _, err := gw.G.Reload(reload.TriggerAdmin); err != nil {
		t.Fatal(err)
	}
	if got := endpointSeries(string(mustMetrics(t, gw.OpsURL))); slices.Contains(got, "/doomed") {
		t.Errorf("the reload left the removed route's series: %q", got)
	}
	close(release)
	if code := <-status; code != http.StatusOK {
		t.Fatalf("the request in flight on the removed route: %d", code)
	}
	// The access log line is written after the request is counted.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(gw.Logs.String(), `"path":"/doomed/slow"`) {
		if time.Now().After(deadline) {
			t.Fatal("the slow request was never logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := endpointSeries(string(mustMetrics(t, gw.OpsURL))); slices.Contains(got, "/doomed") {
		t.Errorf("the request that finished after the reload brought the removed route's series back: %q", got)
	}

	writeAtomically(t, path, with)
	if _, err := gw.G.Reload(reload.TriggerAdmin); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, gw.URL+"/doomed/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/doomed/x after it came back: %d", resp.StatusCode)
	}
	if got := waitEndpoints(t, gw.OpsURL, func(got []string) bool { return slices.Contains(got, "/doomed") }); !slices.Contains(got, "/doomed") {
		t.Error("the route added again is not counted")
	}
}

// TestWatcherAppliesAnEditMadeDuringTheBoot pins that the watcher compares
// the file with the content the boot loaded, not with a second read: an
// edit that lands between config.Load and the gateway's construction is
// applied at the watcher's next look instead of being taken as the content
// in force (and skipped until the next edit).
func TestWatcherAppliesAnEditMadeDuringTheBoot(t *testing.T) {
	a, _ := serve(t, named("a"))
	b, _ := serve(t, named("b"))
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	writeAtomically(t, path, "routes: [{prefix: /r, target_url: '"+a+"'}]\n")
	env := map[string]string{"CONFIG_FILE": path, "ENABLE_CACHING": "false"}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, path, "routes: [{prefix: /r, target_url: '"+b+"'}]\n") // the edit during the boot
	g, err := New(cfg, telemetry.NewLogger(io.Discard, slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.stopLife)
	res, err := g.reload.ReloadIfChanged(reload.TriggerFile) // what the watcher does on the edit's event
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Changed, []string{"/r"}) || g.Config().Routes[0].Targets[0].URL.String() != b {
		t.Errorf("the edit made during the boot was skipped: result %+v, /r → %v", res, g.Config().Routes[0].Targets)
	}
}

// TestReloadClosesAReplacedRouteClientsIdleConnections: a route with a
// client of its own (here upstream_tls) that a reload rebuilds leaves no
// idle connection to its backend behind, instead of one held until
// IDLE_CONN_TIMEOUT.
func TestReloadClosesAReplacedRouteClientsIdleConnections(t *testing.T) {
	// Connections that carried a request (health probes dial and leave).
	var open, closed atomic.Int64
	var served sync.Map
	be := httptest.NewUnstartedServer(echoHandler("tls"))
	be.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateActive:
			if _, again := served.LoadOrStore(c, true); !again {
				open.Add(1)
			}
		case http.StateClosed:
			if _, ok := served.Load(c); ok {
				closed.Add(1)
			}
		}
	}
	be.StartTLS()
	t.Cleanup(be.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: be.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	route := func(timeout int) string {
		return fmt.Sprintf("routes:\n  - {prefix: /s, target_url: '%s', timeout_secs: %d, upstream_tls: {ca_file: '%s'}}\n", be.URL, timeout, ca)
	}
	writeAtomically(t, path, route(30))
	gw := start(t, map[string]string{"CONFIG_FILE": path})
	if resp, body := get(t, gw.URL+"/s/x"); resp.StatusCode != 200 || decodeEcho(t, body).Name != "tls" {
		t.Fatalf("through upstream_tls: %d %s", resp.StatusCode, body)
	}
	if open.Load() != 1 || closed.Load() != 0 {
		t.Fatalf("backend connections: %d opened, %d closed", open.Load(), closed.Load())
	}
	writeAtomically(t, path, route(20))
	if _, err := gw.G.Reload(reload.TriggerAdmin); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for closed.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the rebuilt route's old connection is still open (%d opened, %d closed)", open.Load(), closed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp, _ := get(t, gw.URL+"/s/x"); resp.StatusCode != 200 {
		t.Errorf("after the reload: %d", resp.StatusCode)
	}
}
