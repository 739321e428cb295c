package accesslog

import (
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// BenchmarkAccessLog measures the step on a 200 with its JSON line (info)
// and without (warn: a 200 is not logged); the difference is the line's
// cost. The sampler is on, as in production: a 200 must not pay for it.
func BenchmarkAccessLog(b *testing.B) {
	for _, lvl := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		b.Run(lvl.String(), func(b *testing.B) { benchAccessLog(b, lvl, 200, 10) })
	}
}

// BenchmarkAccessLog429 measures a rejection's line: written without
// sampling (rate 0), written through the sampler (a rate never reached),
// and suppressed by it (one client over its rate: the flood case).
func BenchmarkAccessLog429(b *testing.B) {
	for _, c := range []struct {
		name string
		rate int
	}{{"unsampled", 0}, {"sampled-written", math.MaxInt32}, {"sampled-suppressed", 10}} {
		b.Run(c.name, func(b *testing.B) { benchAccessLog(b, slog.LevelInfo, 429, c.rate) })
	}
}

func benchAccessLog(b *testing.B, lvl slog.Level, status, rate int) {
	m := telemetry.NewMetrics("test")
	s, err := NewSampler(SamplerConfig{Rate: rate, Registerer: m.Registry})
	if err != nil {
		b.Fatal(err)
	}
	h := New(telemetry.NewLogger(io.Discard, lvl), m, s)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		request.From(r.Context()).Endpoint = "/api"
		w.WriteHeader(status)
	}))
	req := httptest.NewRequest("GET", "/api/items?x=1", nil)
	client := netip.MustParseAddr("203.0.113.9")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		in, r := request.New(w, req, time.Now(), 0)
		in.ID, in.ClientIP, in.ClientIPText, in.Backend = "18dfc98db7eef8f4-r0", client, "203.0.113.9", "http://10.0.0.1:8080"
		h.ServeHTTP(in.Writer(), r)
	}
}

// BenchmarkSamplerAdmitParallel measures the sampler alone under a flood
// from many clients on every CPU: the striped locks keep them apart.
func BenchmarkSamplerAdmitParallel(b *testing.B) {
	s, err := NewSampler(SamplerConfig{Rate: 10})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		base := next.Add(1) << 10
		i := uint32(0)
		for pb.Next() {
			s.admit(v4(base+i%1024), 429)
			i++
		}
	})
}
