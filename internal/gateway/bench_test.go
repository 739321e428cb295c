package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// BenchmarkProxiedRequest measures one request through the whole chain
// (request id, security headers, access log at info, metrics, recovery,
// client IP, sanitize, routing, balancing, ReverseProxy) to a real upstream
// on loopback. Compare with BenchmarkBareReverseProxy, the floor.
func BenchmarkProxiedRequest(b *testing.B) {
	body := []byte(`{"status":"ok","service":"bench-upstream","id":12345,"items":[1,2,3,4,5],"message":"hello, world!!"}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer up.Close()
	env := map[string]string{"SERVICE_ROUTES": `[{"prefix":"/","target_url":"` + up.URL + `"}]`}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	if err != nil {
		b.Fatal(err)
	}
	g, err := New(cfg, telemetry.NewLogger(io.Discard, slog.LevelInfo))
	if err != nil {
		b.Fatal(err)
	}
	h := g.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = "203.0.113.9:5555"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}
