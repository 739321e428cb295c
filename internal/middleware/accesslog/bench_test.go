package accesslog

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// BenchmarkAccessLog measures the step with its JSON line (info) and
// without (warn: a 200 is not logged); the difference is the line's cost.
func BenchmarkAccessLog(b *testing.B) {
	for _, lvl := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		b.Run(lvl.String(), func(b *testing.B) { benchAccessLog(b, lvl) })
	}
}

func benchAccessLog(b *testing.B, lvl slog.Level) {
	m := telemetry.NewMetrics("test")
	h := New(telemetry.NewLogger(io.Discard, lvl), m, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		request.From(r.Context()).Endpoint = "/api"
		w.WriteHeader(200)
	}))
	req := httptest.NewRequest("GET", "/api/items?x=1", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		in, r := request.New(w, req, time.Now(), 0)
		in.ID, in.ClientIPText, in.Backend = "18dfc98db7eef8f4-r0", "203.0.113.9", "http://10.0.0.1:8080"
		h.ServeHTTP(in.Writer(), r)
	}
}
