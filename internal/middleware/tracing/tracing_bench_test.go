package tracing

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/portcullis/portcullis/internal/request"
)

// BenchmarkServerSpan is what the gateway.request span costs per request:
// tracing off (the step is absent), on but not sampled, and sampled (span
// recorded; export is asynchronous and not measured here).
func BenchmarkServerSpan(b *testing.B) {
	prop := propagation.TraceContext{}
	final := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, bc := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{
		{name: "off"},
		{name: "unsampled", sampler: sdktrace.NeverSample()},
		{name: "sampled", sampler: sdktrace.AlwaysSample()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := http.Handler(final)
			if bc.sampler != nil {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(bc.sampler))
				h = New(tp.Tracer("bench"), prop)(final)
			}
			req := httptest.NewRequest(http.MethodGet, "/api/x", nil)
			w := httptest.NewRecorder()
			_, req = request.New(w, req, time.Now(), 0)
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
	}
}
