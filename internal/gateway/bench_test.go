package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testsvc"
)

// BenchmarkProxiedRequest measures one request through the whole chain
// (request id, security headers, access log at info, metrics, recovery,
// client IP, sanitize, routing, balancing, ReverseProxy) to a real upstream
// on loopback. Compare with BenchmarkBareReverseProxy, the floor.
func BenchmarkProxiedRequest(b *testing.B) {
	// Every request goes upstream (BenchmarkCacheHit measures hits).
	h := benchGateway(b, benchUpstream(b), "ENABLE_CACHING", "false")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if w := benchServe(h, "/"); w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// benchUpstream is a real loopback upstream answering a small JSON body.
func benchUpstream(b *testing.B) string {
	body := []byte(`{"status":"ok","service":"bench-upstream","id":12345,"items":[1,2,3,4,5],"message":"hello, world!!"}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	b.Cleanup(up.Close)
	return up.URL
}

// benchGateway builds a gateway routing / to upstream, with the edge
// limits out of the way (one client sends every request) and the access
// log at info, as in production; extra are more NAME, value pairs.
func benchGateway(b *testing.B, upstream string, extra ...string) http.Handler {
	env := map[string]string{
		"SERVICE_ROUTES":          `[{"prefix":"/","target_url":"` + upstream + `"}]`,
		"MAX_REQUESTS_PER_SECOND": "1000000000", "MAX_BURST_SIZE": "1000000000", "DDOS_THRESHOLD": "2000000000",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	if err != nil {
		b.Fatal(err)
	}
	g, err := New(cfg, telemetry.NewLogger(io.Discard, slog.LevelInfo))
	if err != nil {
		b.Fatal(err)
	}
	return g.Handler()
}

func benchServe(h http.Handler, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = "203.0.113.9:5555"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// BenchmarkEdgeChain measures what edge protection (allow/deny, DDoS guard,
// per-IP rate limit) adds to the core envelope for a known, allowed client:
// compare the two sub-benchmarks' ns/op and allocs/op.
func BenchmarkEdgeChain(b *testing.B) {
	env := map[string]string{
		"SERVICE_ROUTES":          `[{"prefix":"/","target_url":"http://127.0.0.1:9"}]`,
		"TRUSTED_PROXIES":         "10.99.99.99/32",
		"MAX_REQUESTS_PER_SECOND": "1000000000",
		"MAX_BURST_SIZE":          "1000000000",
		"DDOS_THRESHOLD":          "2000000000",
		"IP_BLACKLIST":            "198.51.100.0/24,2001:db8::/32",
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	if err != nil {
		b.Fatal(err)
	}
	g, err := New(cfg, telemetry.NewLogger(io.Discard, slog.LevelWarn))
	if err != nil {
		b.Fatal(err)
	}
	final := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	edge, err := middlewarePublicServing(g, "/api/x", final)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{name: "core", h: middlewareOps(g, final)},
		{name: "core+edge", h: edge},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/api/x", nil)
			req.RemoteAddr = "203.0.113.9:5555"
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				bc.h.ServeHTTP(w, req)
			}
		})
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

// BenchmarkCacheHit measures a request answered from the response cache
// through the whole chain, from the memory store and from a real Redis
// (one GET round trip on loopback). Compare with BenchmarkProxiedRequest.
func BenchmarkCacheHit(b *testing.B) {
	up := benchUpstream(b)
	redisAddr, _ := testsvc.Redis(b)
	for _, backend := range []string{"memory", "redis"} {
		b.Run(backend, func(b *testing.B) {
			// The upstream's answer carries no freshness: CACHE_TTL vouches.
			h := benchGateway(b, up, "CACHE_BACKEND", backend, "REDIS_ADDR", redisAddr, "CACHE_TTL", "5m")
			for deadline := time.Now().Add(3 * time.Second); benchServe(h, "/item").Header().Get("X-Cache") != "HIT"; {
				if time.Now().After(deadline) {
					b.Fatal("never a HIT")
				}
				time.Sleep(10 * time.Millisecond)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if w := benchServe(h, "/item"); w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
