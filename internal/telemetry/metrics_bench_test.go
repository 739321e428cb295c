package telemetry

import "testing"

// BenchmarkRequestMetrics is what the request metrics cost per request:
// the cached endpoint lookup, the counter and the duration histogram.
func BenchmarkRequestMetrics(b *testing.B) {
	m := NewMetrics("bench")
	m.Endpoint("/api").Observe("GET", 200, 0.001) // first use creates the children
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Endpoint("/api").Observe("GET", 200, 0.0012)
		}
	})
}
